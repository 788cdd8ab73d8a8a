"""TF Serving's gRPC codec against TensorFlow itself (slow lane: imports TensorFlow): requests
built by the stock client (``tensorflow_serving.apis``, ``tf.make_tensor_proto``, repeated
fields and ``tensor_content``, every dtype) decode to what ``tf.make_ndarray`` makes, and every
reply parses with the stock classes into what TensorFlow reads back."""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest

from tfserverless.protocol import Call, Signature, TensorSpec
from tfserverless.protocol.tensor_proto import decode_tensor, encode_tensor
from tfserverless.protocol.tfs_examples import TaskResult, encode_multi, encode_result
from tfserverless.protocol.tfs_grpc import TFServingGrpc
from tfserverless.protocol.tfs_messages import (
    ModelSpec,
    VersionStatus,
    encode_metadata_response,
    encode_status_response,
    read_spec,
)

pytestmark = pytest.mark.slow  # TensorFlow is imported (inside the fixture, not at collection)


class TF:
    """TensorFlow and the stock TF Serving client, imported once."""

    def __init__(self) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import tensor_pb2
        from tensorflow_serving.apis import (
            classification_pb2,
            get_model_metadata_pb2,
            get_model_status_pb2,
            inference_pb2,
            predict_pb2,
            regression_pb2,
        )

        self.tf, self.tensor_pb2, self.predict_pb2 = tf, tensor_pb2, predict_pb2
        self.classification_pb2, self.regression_pb2 = classification_pb2, regression_pb2
        self.inference_pb2, self.metadata_pb2 = inference_pb2, get_model_metadata_pb2
        self.status_pb2 = get_model_status_pb2


@pytest.fixture(scope="module")
def tf() -> Iterator[TF]:
    if importlib.util.find_spec("tensorflow_serving") is None:  # the compat venvs
        pytest.skip("TF Serving's client (tensorflow-serving-api) is not installed here")
    yield TF()


DTYPES = ["float32", "float64", "int32", "uint8", "int16", "int8", "int64", "bool", "uint16",
          "float16", "bfloat16", "uint32", "uint64", "string"]
SHAPES: List[Tuple[int, ...]] = [(), (1,), (3,), (2, 3), (0,), (0, 3), (2, 1, 2)]


#: values that reach each dtype's edges: negatives, fractions, the top of the unsigned range
VALUES = {
    "uint64": lambda i: np.uint64((1 << 64) - 1) - i.astype(np.uint64),
    "uint32": lambda i: np.uint32((1 << 32) - 1) - i.astype(np.uint32),
    "int64": lambda i: i.astype(np.int64) - (1 << 62),
    "bool": lambda i: i % 3 == 0,
}


def sample(t: TF, dtype: str, shape: Tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n)
    if dtype == "string":
        a = np.empty(n, dtype=object)
        a[:] = [f"s{k}\u00e9".encode() + b"\xff" for k in range(n)]
        return a.reshape(shape)
    dt = np.dtype(t.tf.bfloat16.as_numpy_dtype if dtype == "bfloat16" else dtype)
    if dtype in VALUES:
        values = VALUES[dtype](i)
    elif dt.kind in "fV":
        values = (i - n // 2) * 1.5
    else:
        values = i - (n // 2 if dt.kind == "i" else 0)
    return np.asarray(values).astype(dt).reshape(shape)


def layouts(t: TF, a: np.ndarray) -> Dict[str, Any]:
    """``a`` as the stock client writes it, and (numbers) with the values moved to the
    dtype's repeated field: both layouts a client may send."""
    proto = t.tf.make_tensor_proto(a)
    out = {"make_tensor_proto": proto}
    if a.dtype != object and a.size:
        rep = t.tensor_pb2.TensorProto()
        rep.CopyFrom(proto)
        rep.ClearField("tensor_content")
        field = {"float32": "float_val", "float64": "double_val", "int64": "int64_val",
                 "bool": "bool_val", "float16": "half_val", "bfloat16": "half_val",
                 "uint32": "uint32_val", "uint64": "uint64_val"}.get(a.dtype.name, "int_val")
        rep.ClearField(field)
        flat = a.reshape(-1)
        if a.dtype.name in ("float16", "bfloat16"):
            getattr(rep, field).extend(flat.view(np.uint16).tolist())
        else:
            getattr(rep, field).extend(flat.tolist())
        out["repeated"] = rep
    content = t.tensor_pb2.TensorProto()
    content.CopyFrom(proto)
    if a.dtype != object and a.size and not proto.tensor_content:  # force tensor_content too
        for f in ("float_val", "double_val", "int_val", "int64_val", "bool_val", "half_val",
                  "uint32_val", "uint64_val"):
            content.ClearField(f)
        content.tensor_content = np.ascontiguousarray(a).tobytes()
        out["tensor_content"] = content
    return out


class OneInput:
    default_signature = "serving_default"

    def __init__(self, code: int) -> None:
        sig = Signature("serving_default", {"x": TensorSpec("x", code, None)},
                        {"y": TensorSpec("y", code, None)})
        self.signatures = {"serving_default": sig}

    def signature(self, name: str) -> Signature:
        return self.signatures["serving_default"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_stock_requests_decode_to_what_tensorflow_makes(tf: TF, dtype: str) -> None:
    for shape in SHAPES:
        a = sample(tf, dtype, shape)
        for layout, proto in layouts(tf, a).items():
            req = tf.predict_pb2.PredictRequest()
            req.model_spec.name = "m"
            req.inputs["x"].CopyFrom(proto)
            want = tf.tf.make_ndarray(proto)
            d = TFServingGrpc().decode(req.SerializeToString(), {}, OneInput(proto.dtype),
                                       Call("m", "1", "predict"))
            got = d.feeds["x"]
            assert got.dtype == want.dtype and got.shape == want.shape, (dtype, shape, layout)
            assert got.tobytes() == want.tobytes() if dtype != "string" else \
                got.tolist() == want.tolist(), (dtype, shape, layout)
            reply, _ = TFServingGrpc().encode({"y": got}, d, Call("m", "1", "predict"))
            back = tf.predict_pb2.PredictResponse.FromString(reply)
            out = tf.tf.make_ndarray(back.outputs["y"])
            assert out.dtype == want.dtype and out.shape == want.shape
            assert (out.tolist() == want.tolist()) if dtype == "string" else \
                out.tobytes() == want.tobytes()
            if dtype != "string" and a.size:  # numbers and bools: typed fields (AsProtoField)
                assert not back.outputs["y"].tensor_content


def test_tensorflow_padding_with_the_last_value_is_refused_in_one_line(tf: TF) -> None:
    proto = tf.tf.make_tensor_proto(1.0, shape=[2, 3])  # one float_val: TF repeats it
    with pytest.raises(Exception) as e:
        decode_tensor(proto.SerializeToString(), "x")
    assert e.value.status == 400 and "has 1 values in float_val but shape [2, 3] needs 6; " \
        "expected exactly one value per element (TensorFlow pads" in e.value.message


def test_encoded_tensors_read_back_in_tensorflow(tf: TF) -> None:
    for dtype in DTYPES:
        for shape in SHAPES:
            a = sample(tf, dtype, shape)
            back = tf.tf.make_ndarray(tf.tensor_pb2.TensorProto.FromString(encode_tensor(a)))
            assert back.dtype == a.dtype and back.shape == a.shape
            assert back.tolist() == a.tolist() if dtype == "string" else back.tobytes() == a.tobytes()


def test_stock_classes_parse_every_reply(tf: TF) -> None:
    outputs = {"classes": np.array([[b"a", b"b"]], object), "scores": np.ones((1, 2), np.float32)}
    cls = tf.classification_pb2.ClassificationResult.FromString(encode_result("classify", outputs, 1))
    assert [(c.label, c.score) for c in cls.classifications[0].classes] == [("a", 1.0), ("b", 1.0)]
    reg = tf.regression_pb2.RegressionResult.FromString(
        encode_result("regress", {"outputs": np.array([2.5], np.float32)}, 1))
    assert [r.value for r in reg.regressions] == [2.5]
    multi = tf.inference_pb2.MultiInferenceResponse.FromString(encode_multi([
        TaskResult(ModelSpec("m", 1, "", "cls"), "classify", cls.SerializeToString())]))
    assert multi.results[0].classification_result == cls and multi.results[0].model_spec.version.value == 1
    status = tf.status_pb2.GetModelStatusResponse.FromString(
        encode_status_response([VersionStatus(123, "AVAILABLE")]))
    assert status.model_version_status[0].state == tf.status_pb2.ModelVersionStatus.AVAILABLE
    spec = read_spec(tf.status_pb2.GetModelStatusRequest(
        model_spec={"name": "m", "version_label": "stable"}).SerializeToString())
    assert spec == ModelSpec("m", None, "stable", "")


def test_metadata_shapes_are_written_as_tensorflow_writes_them(tf: TF) -> None:
    sig = Signature("serving_default",
                    {"x": TensorSpec("x", 1, (-1, 3), "x:0"), "u": TensorSpec("u", 7, None, "u:0"),
                     "s": TensorSpec("s", 9, (), "s:0")},
                    {"y": TensorSpec("y", 1, (-1,), "y:0")}, "tensorflow/serving/predict")
    reply = tf.metadata_pb2.GetModelMetadataResponse.FromString(
        encode_metadata_response("m", 1, {"serving_default": sig}))
    sig_map = tf.metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(sig_map)
    got = sig_map.signature_def["serving_default"]
    shapes = {"x": [None, 3], "u": None, "s": []}
    for alias, dims in shapes.items():
        assert got.inputs[alias].tensor_shape == tf.tf.TensorShape(dims).as_proto()
        assert got.inputs[alias].name == f"{alias}:0"
    assert got.outputs["y"].tensor_shape == tf.tf.TensorShape([None]).as_proto()
    assert got.method_name == "tensorflow/serving/predict"
