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
    ``predict_images`` (predict), a classify ``serving_default`` and a regress ``regress_sum``
    over tf.Examples."""
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
        total = tf.reduce_sum(x, axis=1, name="x_sum")  # regress: the sum of an example's x
        regress = sdu.build_signature_def(
            inputs={"inputs": utils.build_tensor_info(serialized)},
            outputs={"outputs": utils.build_tensor_info(total)},
            method_name="tensorflow/serving/regress",
        )
        builder.add_meta_graph_and_variables(
            sess, ["serve"],
            signature_def_map={"predict_images": predict, "serving_default": classify,
                               "regress_sum": regress},
        )
        builder.save()
        sess.close()
    return out


def _v1(tf: Any) -> Any:
    return tf.compat.v1 if hasattr(tf, "compat") and hasattr(tf.compat, "v1") else tf


def _save_v1(tf: Any, graph: Any, out: str, signatures: Dict[str, Any]) -> None:
    """TF1-style export (Session + SavedModelBuilder), which TF 1.x and 2.x both write."""
    v1 = _v1(tf)
    with graph.as_default():
        sess = v1.Session(graph=graph)
        sess.run(v1.global_variables_initializer())
        sdu = v1.saved_model.signature_def_utils
        builder = v1.saved_model.builder.SavedModelBuilder(_fresh(out))
        builder.add_meta_graph_and_variables(
            sess, ["serve"],
            signature_def_map={k: sdu.predict_signature_def(inputs=i, outputs=o)
                               for k, (i, o) in signatures.items()})
        builder.save()
        sess.close()


def build_multi(tf: Any, out: str) -> str:
    """Several signatures, several inputs, every wire dtype (``echo``: all the EAS SDK can
    send; ``half``: DT_HALF, which it cannot).  Built the TF1 way so every TF can build it."""
    v1 = _v1(tf)
    g = tf.Graph()
    with g.as_default():
        ph = v1.placeholder
        echo_in = {n: ph(getattr(tf, t), [None, None], name=n) for n, (t, _) in ECHO_DTYPES.items()}
        echo_out = {n + "_out": tf.identity(x) for n, x in echo_in.items()}
        a = ph(tf.float32, [None, 3], name="a")
        b = ph(tf.float32, [None, 3], name="b")
        scale = v1.Variable(2.0, name="scale")
        fx = ph(tf.float32, [2, 3], name="fixed_x")
        sx = ph(tf.float32, [], name="scalar_x")
        cx = ph(tf.int32, [None], name="check_x")
        check = v1.assert_non_negative(cx, message="x must be >= 0")
        with tf.control_dependencies([check]):
            cy = cx * 2
        hx = ph(tf.float16, [None, None], name="half_x")
        ex = ph(tf.float32, [None], name="expand_x")
        sigs = {
            "echo": (echo_in, echo_out),
            "serving_default": ({"a": a, "b": b}, {"sum": a + b, "diff": a - b}),
            "fixed": ({"x": fx}, {"y": fx * scale}),
            "scalar": ({"x": sx}, {"y": sx + 1.0}),
            "check": ({"x": cx}, {"y": cy}),
            "half": ({"x": hx}, {"y": tf.identity(hx)}),
            "expand": ({"x": ex}, {"y": tf.tile(ex, [4])}),
        }
    _save_v1(tf, g, out, sigs)
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
    v1 = _v1(tf)
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None], name="x")
        calls = v1.Variable(0, dtype=tf.int64, name="calls")
        n = tf.identity(calls.assign_add(1))
        with tf.control_dependencies([n]):
            y = x * 2.0
    _save_v1(tf, g, out, {"serving_default": ({"x": x}, {"y": y, "calls": n})})
    extra = os.path.join(out, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    writer = tf.io.TFRecordWriter if hasattr(tf, "io") else v1.python_io.TFRecordWriter
    with writer(os.path.join(extra, "tf_serving_warmup_requests")) as w:
        w.write(tf_serving_warmup_record(tf, "serving_default",
                                         {"x": np.array([1, 2, 3], np.float32)}))
    return out


def build_slow(tf: Any, out: str) -> str:
    """As slow as asked: ``n`` iterations of a 128x128 matmul (TensorFlow's own ops, so every
    TF builds it), and ``calls``, how many times the model actually ran; the ``wait``
    signature runs for ``ms`` milliseconds of wall time instead."""
    v1 = _v1(tf)
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None], name="x")
        n = v1.placeholder(tf.int32, [], name="n")
        w = tf.constant(np.random.RandomState(3).normal(0, 0.05, (128, 128)).astype(np.float32))
        _, acc = v1.while_loop(lambda i, a: i < n, lambda i, a: (i + 1, tf.tanh(tf.matmul(a, w))),
                               [tf.constant(0), tf.ones([128, 128])])
        calls = v1.Variable(0, dtype=tf.int64, name="calls")
        count = tf.identity(calls.assign_add(1))
        with tf.control_dependencies([count]):
            y = x * 2.0 + 0.0 * tf.reduce_sum(acc)
        # ``wait``: at least ``ms`` milliseconds of wall time whatever the machine's speed
        # (tf.timestamp, in every TF since 1.12), so tests need no calibration
        ms = v1.placeholder(tf.float64, [], name="ms")
        wx = v1.placeholder(tf.float32, [None], name="wx")
        with tf.control_dependencies([wx]):
            start = tf.timestamp()
        waited = v1.while_loop(lambda t: t - start < ms / 1000.0, lambda t: tf.timestamp(),
                               [start])
        wcount = tf.identity(calls.assign_add(1))
        with tf.control_dependencies([wcount]):
            wy = wx * 2.0 + 0.0 * tf.cast(waited, tf.float32)
    _save_v1(tf, g, out, {"serving_default": ({"x": x, "n": n}, {"y": y, "calls": count}),
                          "wait": ({"x": wx, "ms": ms}, {"y": wy, "calls": wcount})})
    return out


def build_batchy(tf: Any, out: str) -> str:
    """For batching: each call takes a few ms (a fixed 128x128 matmul loop) so concurrent
    requests gather; ``rows`` tells each request how many rows its call carried.
    ``serving_default``: per-row softmax of x [None, None]; ``check``: x [None] int32, fails
    in the model on a negative value; ``flat``: y is the sum of all rows (no batch dim)."""
    v1 = _v1(tf)
    g = tf.Graph()
    with g.as_default():
        w = tf.constant(np.random.RandomState(3).normal(0, 0.05, (128, 128)).astype(np.float32))
        _, acc = v1.while_loop(lambda i, a: i < 40, lambda i, a: (i + 1, tf.tanh(tf.matmul(a, w))),
                               [tf.constant(0), tf.ones([128, 128])])
        zero = 0.0 * tf.reduce_sum(acc)
        x = v1.placeholder(tf.float32, [None, None], name="x")
        rows = tf.fill(tf.shape(x)[:1], tf.shape(x)[0])
        y = tf.nn.softmax(x + zero)
        cx = v1.placeholder(tf.int32, [None], name="check_x")
        with tf.control_dependencies([v1.assert_non_negative(cx, message="x must be >= 0")]):
            cy = cx * 2 + tf.cast(zero, tf.int32)
        fx = v1.placeholder(tf.float32, [None], name="flat_x")
        fy = tf.reduce_sum(fx) + zero
    _save_v1(tf, g, out, {"serving_default": ({"x": x}, {"y": y, "rows": rows}),
                          "check": ({"x": cx}, {"y": cy}),
                          "flat": ({"x": fx}, {"y": fy})})
    return out


def build_tf2_native(tf: Any, out: str) -> str:
    """A TF2-only export (``tf.saved_model.save`` of a ``tf.Module``): TF 1.x cannot load it."""

    class Doubler(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            return {"y": x * self.k}

    m = Doubler()
    tf.saved_model.save(m, _fresh(out), signatures={"serving_default": m.serve})
    return out


def build_all(out_dir: str, only: Any = ()) -> Dict[str, str]:
    import tensorflow as tf  # deferred: only the builder subprocess imports TensorFlow

    os.makedirs(out_dir, exist_ok=True)
    if only:  # e.g. the benchmarks: ``python tests/models.py OUT slow``
        return {n: BUILDERS[n](tf, os.path.join(out_dir, n)) for n in only}
    built = {
        "tf1_mnist": build_tf1_mnist(tf, os.path.join(out_dir, "tf1_mnist")),
        "multi": build_multi(tf, os.path.join(out_dir, "multi")),
        "counter": build_counter(tf, os.path.join(out_dir, "counter")),
        "slow": build_slow(tf, os.path.join(out_dir, "slow")),
        "batchy": build_batchy(tf, os.path.join(out_dir, "batchy")),
    }
    if int(tf.__version__.split(".")[0]) >= 2:
        built["tf2_native"] = build_tf2_native(tf, os.path.join(out_dir, "tf2_native"))
    return built


BUILDERS = {"tf1_mnist": build_tf1_mnist, "multi": build_multi, "counter": build_counter,
            "slow": build_slow, "batchy": build_batchy}

if __name__ == "__main__":
    for name, path in build_all(sys.argv[1], sys.argv[2:]).items():
        print(name, path)
