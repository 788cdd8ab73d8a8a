"""Open Inference Protocol (V2) codec, fast lane: JSON and binary tensors, no TensorFlow."""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import Call
from tfserverless.protocol.v2 import V2

from .test_tfserving import Sigs

CODEC = V2()
CALL = Call("m", "3")


def body_of(doc: Dict[str, Any], blobs: List[bytes] = ()) -> Tuple[bytes, Dict[str, str]]:  # type: ignore[assignment]
    head = json.dumps(doc).encode()
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {"inference-header-content-length": str(len(head))}


def split(body: bytes, headers: Dict[str, str]) -> Tuple[Dict[str, Any], bytes]:
    n = headers.get("Inference-Header-Content-Length")
    if n is None:
        return json.loads(body), b""
    return json.loads(body[:int(n)]), body[int(n):]


def infer(doc: Dict[str, Any], outputs: Dict[str, np.ndarray], blobs: List[bytes] = (),  # type: ignore[assignment]
          ) -> Tuple[Any, Dict[str, Any], bytes, Dict[str, str]]:
    body, headers = body_of(doc, blobs)
    d = CODEC.decode(body, headers, Sigs(), CALL)
    out, h = CODEC.encode(outputs, d, CALL)
    reply, raw = split(out, h)
    return d, reply, raw, h


def test_json_tensors_in_and_out() -> None:
    doc = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                   "data": [1, 2, 3, 4, 5, 6.5]}]}
    y = np.array([[0.1, 1 / 3, 2], [np.nan, 1, 1]], np.float32)
    d, reply, raw, h = infer(doc, {"y": y})
    np.testing.assert_array_equal(d.feeds["x"], [[1, 2, 3], [4, 5, 6.5]])
    assert h["Content-Type"] == "application/json" and raw == b""
    assert reply["model_name"] == "m" and reply["model_version"] == "3" and reply["id"] == "r1"
    (o,) = reply["outputs"]
    assert o["name"] == "y" and o["datatype"] == "FP32" and o["shape"] == [2, 3]
    np.testing.assert_array_equal(np.array(o["data"], np.float32), y.reshape(-1))  # NaN too


def test_nested_json_data_is_accepted() -> None:
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2, 3]]}]}
    d, _, _, _ = infer(doc, {"y": np.zeros((1, 3), np.float32)})
    assert d.feeds["x"].shape == (1, 3)


def test_binary_tensors_in_and_out() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    doc = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                       "parameters": {"binary_data_size": x.nbytes}}],
           "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    y = (x * 2).astype(np.float32)
    d, reply, raw, h = infer(doc, {"y": y}, [x.tobytes()])
    np.testing.assert_array_equal(d.feeds["x"], x)
    (o,) = reply["outputs"]
    assert "data" not in o and o["parameters"] == {"binary_data_size": y.nbytes}
    assert h["Content-Type"] == "application/octet-stream"
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(2, 3), y)


def test_bytes_tensors_binary_and_json() -> None:
    items = [b"a", b"\x00\xff", b""]
    blob = b"".join(struct.pack("<I", len(v)) + v for v in items)
    doc = {"parameters": {"signature_name": "str", "binary_data_output": True},
           "inputs": [{"name": "s", "shape": [3], "datatype": "BYTES",
                       "parameters": {"binary_data_size": len(blob)}}]}
    d, reply, raw, _ = infer(doc, {"o": np.array(items, object)}, [blob])
    assert list(d.feeds["s"]) == items and raw == blob
    assert reply["outputs"][0]["datatype"] == "BYTES"
    doc = {"parameters": {"signature_name": "str"},
           "inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}]}
    _, reply, _, _ = infer(doc, {"o": np.array([b"p", b"q"], object)})
    assert reply["outputs"][0]["data"] == ["p", "q"]
    with pytest.raises(BadRequest, match="binary_data"):
        infer(doc, {"o": np.array([b"\xff", b"q"], object)})


def test_outputs_filter_and_request_default() -> None:
    doc = {"parameters": {"signature_name": "two"},
           "inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                      {"name": "n", "shape": [1], "datatype": "INT32", "data": [4]}],
           "outputs": [{"name": "s"}]}
    d, reply, _, _ = infer(doc, {"s": np.ones(1, np.float32)})
    assert d.outputs == ["s"] and [o["name"] for o in reply["outputs"]] == ["s"]


def bad(doc: Any, blobs: List[bytes] = (), header: Optional[str] = None) -> str:  # type: ignore[assignment]
    body, headers = body_of(doc, blobs) if isinstance(doc, dict) else (doc, {})
    if header is not None:
        headers = {"inference-header-content-length": header}
    with pytest.raises(BadRequest) as e:
        CODEC.decode(body, headers, Sigs(), CALL)
    assert "\n" not in e.value.message
    return e.value.message


X = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}


@pytest.mark.parametrize("doc,msg", [
    (b"{", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    ({"inputs": []}, '"inputs" must be a list of 1'),
    ({"inputs": [dict(X, datatype="FP8")]}, "datatype 'FP8'"),
    ({"inputs": [dict(X, datatype="INT32", data=[1, 2, 3])]}, "has dtype DT_INT32"),
    ({"inputs": [dict(X, shape=[1, -3])]}, "expected a list of at most"),
    ({"inputs": [dict(X, shape="1,3")]}, "expected a list"),
    ({"inputs": [dict(X, data=[1, 2])]}, "has 2 values; shape [1, 3] needs 3"),
    ({"inputs": [dict(X, data=[[1, 2], [3]])]}, "ragged"),
    ({"inputs": [{k: v for k, v in X.items() if k != "data"}]}, 'neither "data"'),
    ({"inputs": [dict(X, name="z")]}, "unknown input 'z'"),
    ({"inputs": [X, X]}, None),  # repeated input: the later wins, as a map would
    ({"inputs": [X], "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
    ({"inputs": [X], "outputs": [{"name": "y", "parameters": {"classification": 2}}]},
     "classification extension"),
    ({"inputs": [X], "parameters": {"signature_name": "zz"}}, "unknown signature_name"),
    ({"inputs": [dict(X, parameters={"binary_data_size": 99})]}, "runs past the body"),
])
def test_bad_requests_are_400_with_one_line(doc: Any, msg: Optional[str]) -> None:
    if msg is None:
        CODEC.decode(json.dumps(doc).encode(), {}, Sigs(), CALL)
        return
    assert msg in bad(doc)


def test_binary_framing_errors() -> None:
    x = np.zeros(3, np.float32).tobytes()
    doc = {"inputs": [dict(X, data=None, parameters={"binary_data_size": 12})]}
    del doc["inputs"][0]["data"]
    assert "not a length" in bad(doc, [x], header="999999")
    assert "not a length" in bad(doc, [x], header="-1")
    assert "belong to no input" in bad(doc, [x, b"xx"])
    doc["inputs"][0]["parameters"]["binary_data_size"] = 8
    assert "needs 12" in bad(doc, [x[:8]])
    s = {"parameters": {"signature_name": "str"},
         "inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                     "parameters": {"binary_data_size": 6}}]}
    assert "needs at least 8" in bad(s, [struct.pack("<I", 1) + b"a" + b"\x00"])
    s["inputs"][0]["parameters"]["binary_data_size"] = 8
    assert "ends after 1 of 2" in bad(s, [struct.pack("<I", 1) + b"a" + b"\x00" * 3])
    s["inputs"][0].update(shape=[1], parameters={"binary_data_size": 6})
    assert "runs past its data" in bad(s, [struct.pack("<I", 99) + b"ab"])


def test_bool_binary_is_normalised() -> None:
    codec_sigs = Sigs()
    from tfserverless.protocol import Signature, TensorSpec

    codec_sigs.signatures["b"] = Signature("b", {"x": TensorSpec("x", 10, (-1,))},
                                           {"y": TensorSpec("y", 10, (-1,))})
    body, headers = body_of({"parameters": {"signature_name": "b"},
                             "inputs": [{"name": "x", "shape": [3], "datatype": "BOOL",
                                         "parameters": {"binary_data_size": 3}}]}, [b"\x00\x02\x01"])
    d = CODEC.decode(body, headers, codec_sigs, CALL)
    assert d.feeds["x"].tolist() == [False, True, True]
