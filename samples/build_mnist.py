"""Build the sample model: an MNIST-shaped SavedModel like the one in the EAS docs.

Signature ``predict_images``: input ``images`` [-1, 784] float32, output ``scores`` [-1, 10]
(softmax of a 784-256-10 perceptron with fixed pseudo-random weights).
Usage: ``python build_mnist.py OUT_DIR``.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np


def build(out_dir: str, *, hidden: int = 256, seed: int = 0) -> str:
    import tensorflow as tf  # deferred: only this script needs TensorFlow

    rng = np.random.RandomState(seed)
    w1 = rng.normal(0, 0.05, (784, hidden)).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = rng.normal(0, 0.05, (hidden, 10)).astype(np.float32)
    b2 = np.zeros(10, np.float32)

    class Mnist(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(w1)
            self.b1 = tf.Variable(b1)
            self.w2 = tf.Variable(w2)
            self.b2 = tf.Variable(b2)

        def _scores(self, images):  # type: ignore[no-untyped-def]
            h = tf.nn.relu(tf.matmul(images, self.w1) + self.b1)
            return tf.nn.softmax(tf.matmul(h, self.w2) + self.b2)

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="images")])
        def predict_images(self, images):  # type: ignore[no-untyped-def]
            return {"scores": self._scores(images)}

    m = Mnist()
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(m, tmp, signatures={"predict_images": m.predict_images})
    os.replace(tmp, out_dir)
    return out_dir


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "mnist")
    print(build(target))
