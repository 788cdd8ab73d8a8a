"""Build the sample model: an MNIST-shaped SavedModel like the one in the EAS docs.

Signature ``predict_images``: input ``images`` [-1, 784] float32, output ``scores`` [-1, 10]
(softmax of a 784-256-10 perceptron with fixed pseudo-random weights).
Usage: ``python build_mnist.py OUT_DIR [HIDDEN,...]``; the benchmarks build a weight-bound
784-2048-2048-10 one with ``python build_mnist.py OUT 2048,2048``.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Sequence

import numpy as np


def build(out_dir: str, *, hidden: Sequence[int] = (256,), seed: int = 0) -> str:
    import tensorflow as tf  # deferred: only this script needs TensorFlow

    rng = np.random.RandomState(seed)
    sizes = [784, *hidden, 10]
    weights = [(rng.normal(0, 0.05, (a, b)).astype(np.float32), np.zeros(b, np.float32))
               for a, b in zip(sizes, sizes[1:])]

    class Mnist(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [(tf.Variable(w), tf.Variable(b)) for w, b in weights]

        def _scores(self, images):  # type: ignore[no-untyped-def]
            h = images
            for w, b in self.layers[:-1]:
                h = tf.nn.relu(tf.matmul(h, w) + b)
            w, b = self.layers[-1]
            return tf.nn.softmax(tf.matmul(h, w) + b)

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
    layers = tuple(int(n) for n in sys.argv[2].split(",")) if len(sys.argv) > 2 else (256,)
    print(build(target, hidden=layers))
