"""Real SavedModels built by whichever TensorFlow the test venv has (TF1 or TF2 style).

Run as ``python tests/models.py OUT_DIR`` to build them all into OUT_DIR (the tests do this in a
subprocess, so the pytest process itself never imports TensorFlow).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Dict

import numpy as np

# name -> (TF dtype attribute, numpy dtype); the echo signature has one input of each
ECHO_DTYPES = {
    "f32": ("float32", "float32"),
    "f64": ("float64", "float64"),
    "i8": ("int8", "int8"),
    "i16": ("int16", "int16"),
    "i32": ("int32", "int32"),
    "i64": ("int64", "int64"),
    "u8": ("uint8", "uint8"),
    "u16": ("uint16", "uint16"),
    "b": ("bool", "bool"),
    "s": ("string", "object"),
}


def _fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    return path


def mnist_weights() -> Dict[str, np.ndarray]:
    rng = np.random.RandomState(7)
    return {"w": rng.normal(0, 0.05, (784, 10)).astype(np.float32),
            "b": rng.normal(0, 0.05, (10,)).astype(np.float32)}


def build_tf1_mnist(tf: Any, out: str) -> str:
    """TF Serving's classic MNIST export, TF1 style: Session graph + signature_def_map with
    ``predict_images`` (predict) and a classify ``serving_default`` over tf.Examples."""
    v1 = tf.compat.v1 if hasattr(tf, "compat") else tf
    wts = mnist_weights()
    g = tf.Graph()
    with g.as_default():
        serialized = v1.placeholder(tf.string, name="tf_example")
        feats = v1.parse_example(serialized, {"x": v1.FixedLenFeature([784], tf.float32)})
        x = tf.identity(feats["x"], name="x")
        w = v1.Variable(wts["w"], name="w")
        b = v1.Variable(wts["b"], name="b")
        images = v1.placeholder(tf.float32, [None, 784], name="images")
        scores_images = tf.nn.softmax(tf.matmul(images, w) + b, name="scores_images")
        scores_ex = tf.nn.softmax(tf.matmul(x, w) + b, name="scores_ex")
        values, indices = tf.nn.top_k(scores_ex, 10)
        table = tf.constant([str(i).encode() for i in range(10)])
        classes = tf.gather(table, indices)
        sess = v1.Session(graph=g)
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.builder.SavedModelBuilder(_fresh(out))
        utils = v1.saved_model.utils
        sdu = v1.saved_model.signature_def_utils
        predict = sdu.predict_signature_def(inputs={"images": images},
                                            outputs={"scores": scores_images})
        classify = sdu.build_signature_def(
            inputs={"inputs": utils.build_tensor_info(serialized)},
            outputs={"classes": utils.build_tensor_info(classes),
                     "scores": utils.build_tensor_info(values)},
            method_name="tensorflow/serving/classify",
        )
        builder.add_meta_graph_and_variables(
            sess, ["serve"],
            signature_def_map={"predict_images": predict, "serving_default": classify},
        )
        builder.save()
        sess.close()
    return out


def build_tf2_multi(tf: Any, out: str) -> str:
    """TF2 ``tf.saved_model.save``: several signatures, several inputs, every wire dtype
    (``echo``: all the EAS SDK can send; ``half``: DT_HALF, which it cannot)."""
    spec = tf.TensorSpec
    echo_specs = [spec([None, None], getattr(tf, t), name=n) for n, (t, _) in ECHO_DTYPES.items()]
    names = list(ECHO_DTYPES)

    class Multi(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(2.0)

        @tf.function(input_signature=echo_specs)
        def echo(self, *args):  # type: ignore[no-untyped-def]
            return {n + "_out": tf.identity(a) for n, a in zip(names, args)}

        @tf.function(input_signature=[spec([None, 3], tf.float32, name="a"),
                                      spec([None, 3], tf.float32, name="b")])
        def add(self, a, b):  # type: ignore[no-untyped-def]
            return {"sum": a + b, "diff": a - b}

        @tf.function(input_signature=[spec([None], tf.float32, name="x")])
        def expand(self, x):  # type: ignore[no-untyped-def]
            return {"y": tf.tile(x, [4])}

        @tf.function(input_signature=[spec([None, None], tf.float16, name="x")])
        def half(self, x):  # type: ignore[no-untyped-def]
            return {"y": tf.identity(x)}

        @tf.function(input_signature=[spec([2, 3], tf.float32, name="x")])
        def fixed(self, x):  # type: ignore[no-untyped-def]
            return {"y": x * self.scale}

        @tf.function(input_signature=[spec([], tf.float32, name="x")])
        def scalar(self, x):  # type: ignore[no-untyped-def]
            return {"y": x + 1.0}

        @tf.function(input_signature=[spec([None], tf.int32, name="x")])
        def check(self, x):  # type: ignore[no-untyped-def]
            tf.debugging.assert_non_negative(x, message="x must be >= 0")
            return {"y": x * 2}

    m = Multi()
    tf.saved_model.save(m, _fresh(out), signatures={
        "echo": m.echo, "serving_default": m.add, "fixed": m.fixed,
        "scalar": m.scalar, "check": m.check, "half": m.half, "expand": m.expand,
    })
    return out


def _ld(field: int, payload: bytes) -> bytes:
    n, out = len(payload), bytearray()
    out.append(field << 3 | 2)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + payload


def tf_serving_warmup_record(tf: Any, signature: str, inputs: Dict[str, np.ndarray]) -> bytes:
    """A serialized ``tensorflow.serving.PredictionLog`` with TF's own TensorProtos."""
    request = _ld(1, _ld(3, signature.encode()))  # model_spec.signature_name
    for name, value in inputs.items():
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _ld(2, _ld(1, name.encode()) + _ld(2, tensor))
    return _ld(6, _ld(1, request))  # predict_log.request


def build_counter(tf: Any, out: str) -> str:
    """Counts its calls (output ``calls``), with TF Serving warm-up data in assets.extra."""

    class Counter(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = tf.Variable(0, dtype=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            n = self.calls.assign_add(1)
            return {"y": x * 2.0, "calls": tf.identity(n)}

    m = Counter()
    tf.saved_model.save(m, _fresh(out), signatures={"serving_default": m.serve})
    extra = os.path.join(out, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, "tf_serving_warmup_requests")) as w:
        w.write(tf_serving_warmup_record(tf, "serving_default",
                                         {"x": np.array([1, 2, 3], np.float32)}))
    return out


def build_all(out_dir: str) -> Dict[str, str]:
    import tensorflow as tf  # deferred: only the builder subprocess imports TensorFlow

    os.makedirs(out_dir, exist_ok=True)
    built = {"tf1_mnist": build_tf1_mnist(tf, os.path.join(out_dir, "tf1_mnist"))}
    if int(tf.__version__.split(".")[0]) >= 2:
        built["tf2_multi"] = build_tf2_multi(tf, os.path.join(out_dir, "tf2_multi"))
        built["counter"] = build_counter(tf, os.path.join(out_dir, "counter"))
    return built


if __name__ == "__main__":
    for name, path in build_all(sys.argv[1]).items():
        print(name, path)
