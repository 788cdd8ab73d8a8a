"""TF Serving REST and the Open Inference Protocol end to end: a real server, real SavedModels,
clients as their own docs show them (curl and ``requests`` for TF Serving's REST API guide,
NVIDIA's ``tritonclient.http`` in its own venv), answers checked against the model's math."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest
import requests

from ..conftest import ROOT, TESTS, Server, server_per_target
from ..models import mnist_weights
from .test_service_http import softmax

TOKEN = "proto-token-2718"
AUTH = {"Authorization": TOKEN}
X = np.random.RandomState(5).rand(3, 784).astype(np.float32)


def scores(x: np.ndarray) -> np.ndarray:
    w = mnist_weights()
    return softmax(x @ w["w"] + w["b"])


server = server_per_target(lambda models: {"MODEL_PATH": models["tf1_mnist"],
                                           "SERVICE_TOKEN": TOKEN, "SERVICE_NAME": "mnist"})


def v1(server: Server, rest: str = "") -> str:
    return f"{server.url}/v1/models/mnist{rest}"


# --- TF Serving REST ----------------------------------------------------------------------


def test_predict_with_requests_row_and_columnar(server: Server) -> None:
    """As TF Serving's REST API guide shows it: ``requests.post(url, json=...)``."""
    row = requests.post(v1(server, ":predict"), headers=AUTH, json={
        "signature_name": "predict_images", "instances": X.tolist()})
    assert row.status_code == 200, row.text
    got = np.array(row.json()["predictions"], np.float32)
    np.testing.assert_allclose(got, scores(X), rtol=1e-5, atol=1e-6)
    col = requests.post(v1(server, "/versions/1:predict"), headers=AUTH, json={
        "signature_name": "predict_images", "inputs": {"images": X[:1].tolist()}})
    assert col.status_code == 200, col.text
    np.testing.assert_allclose(np.array(col.json()["outputs"], np.float32), scores(X[:1]),
                               rtol=1e-5, atol=1e-6)


def test_float32_outputs_round_trip_exactly(server: Server) -> None:
    """The JSON numbers read back to the very float32 bits the EAS protobuf carries."""
    from tfserverless import protocol
    r = requests.post(v1(server, ":predict"), headers=AUTH,
                      json={"signature_name": "predict_images", "inputs": X.tolist()})
    from_json = np.array(r.json()["outputs"], np.float32)
    eas = requests.post(f"{server.url}/api/predict/mnist", headers=AUTH,
                        data=protocol.encode_request({"images": X}, signature_name="predict_images"))
    exact = protocol.decode_response(eas.content)["scores"]
    assert from_json.tobytes() == exact.tobytes()
    assert len(r.content) < 14 * exact.size + 100  # shortest float32 text, not float64's 18 digits


def test_big_json_batches_answer_the_eas_bits(server: Server) -> None:
    """Batch-64 bodies (~1 MB: ``jsonfast`` reads them) answer exactly what EAS protobuf does;
    a ragged one is the same 400 a small one gets."""
    from tfserverless import protocol
    x = np.random.RandomState(64).rand(64, 784).astype(np.float32)
    eas = requests.post(f"{server.url}/api/predict/mnist", headers=AUTH,
                        data=protocol.encode_request({"images": x}, signature_name="predict_images"))
    exact = protocol.decode_response(eas.content)["scores"]
    for body in ({"signature_name": "predict_images", "instances": x.tolist()},
                 {"signature_name": "predict_images", "inputs": {"images": x.tolist()}}):
        r = requests.post(v1(server, ":predict"), headers=AUTH, json=body)
        assert r.status_code == 200, r.text
        got = np.array(r.json().get("predictions", r.json().get("outputs")), np.float32)
        assert got.tobytes() == exact.tobytes()
    v2 = requests.post(f"{server.url}/v2/models/mnist/infer", headers=AUTH, json={
        "parameters": {"signature_name": "predict_images"},
        "inputs": [{"name": "images", "shape": [64, 784], "datatype": "FP32",
                    "data": x.reshape(-1).tolist()}]})
    assert v2.status_code == 200, v2.text
    out = v2.json()["outputs"][0]
    assert np.array(out["data"], np.float32).reshape(out["shape"]).tobytes() == exact.tobytes()
    ragged = x.tolist()
    ragged[-1].append(0.5)
    r = requests.post(v1(server, ":predict"), headers=AUTH,
                      json={"signature_name": "predict_images", "instances": ragged})
    assert r.status_code == 400 and "ragged" in r.json()["error"], r.text


def test_predict_with_curl(server: Server, tmp_path: Any) -> None:
    body = tmp_path / "req.json"
    body.write_text(json.dumps({"signature_name": "predict_images", "instances": X[:2].tolist()}))
    out = subprocess.run(["curl", "-s", "-H", f"Authorization: {TOKEN}", "-d", f"@{body}",
                          "-X", "POST", v1(server, ":predict")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.array(json.loads(out.stdout)["predictions"]), scores(X[:2]),
                               rtol=1e-5, atol=1e-6)


def test_classify_and_regress(server: Server) -> None:
    examples = [{"x": X[i].tolist()} for i in range(2)]
    r = requests.post(v1(server, ":classify"), headers=AUTH, json={"examples": examples})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    want = scores(X[:2])
    for i, classes in enumerate(results):
        assert len(classes) == 10
        label, score = classes[0]  # top_k order: the best class first
        assert label == str(int(want[i].argmax())) and abs(score - want[i].max()) < 1e-5
    r = requests.post(v1(server, ":regress"), headers=AUTH, json={
        "signature_name": "regress_sum", "context": {"x": X[0].tolist()}, "examples": [{}, examples[1]]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["results"], [X[0].sum(), X[1].sum()], rtol=1e-5)


def test_status_and_metadata(server: Server) -> None:
    r = requests.get(v1(server), headers=AUTH)
    assert r.json() == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                  "status": {"error_code": "OK", "error_message": ""}}]}
    meta = requests.get(v1(server, "/metadata"), headers=AUTH).json()
    assert meta["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["predict_images"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["images"]["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "784", "name": ""}], "unknown_rank": False}
    assert set(meta["metadata"]["signature_def"]["signature_def"]) == {
        "predict_images", "serving_default", "regress_sum"}


@pytest.mark.parametrize("method,rest,body,status,msg", [
    ("POST", ":predict", b"{not json", 400, "not valid JSON"),
    ("POST", ":predict", b'{"signature_name": "predict_images", "instances": [[1, 2]]}', 400,
     "the model rejected the input: Matrix size-incompatible: In[0]: [1,2], In[1]: [784,10]"),
    ("POST", ":predict", b'{"instances": [[1, 2]]}', 400, "holds int values where strings"),
    ("POST", ":predict", b'{"signature_name": "nope", "instances": [1]}', 400, "unknown signature_name"),
    ("POST", ":classify", b'{"signature_name": "predict_images", "examples": [{}]}', 400,
     "not a classify signature"),
    ("POST", "/versions/7:predict", b'{"instances": [[0]]}', 404, "version 7 not found"),
    ("POST", "/labels/stable:predict", b'{"instances": [[0]]}', 404, "label 'stable' not found"),
    ("GET", ":predict", b"", 405, "expected POST"),
    ("GET", "/versions/2", b"", 404, "version 2 not found"),
    ("GET", "/bogus", b"", 404, "no route"),
])
def test_errors_are_json_as_tf_serving(server: Server, method: str, rest: str, body: bytes,
                                       status: int, msg: str) -> None:
    r = requests.request(method, v1(server, rest), headers=AUTH, data=body)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json" and msg in r.json()["error"]


def test_auth_and_model_name(server: Server) -> None:
    r = requests.post(v1(server, ":predict"), json={"instances": [[0] * 784]})
    assert r.status_code == 401 and "error" in r.json()
    r = requests.post(f"{server.url}/v1/models/other:predict", headers=AUTH, json={"instances": [1]})
    assert r.status_code == 404 and "serves 'mnist'" in r.json()["error"]


def test_binary_eas_body_still_goes_to_eas(server: Server) -> None:
    from tfserverless import protocol
    body = protocol.encode_request({"images": X}, signature_name="predict_images")
    r = requests.post(f"{server.url}/api/predict/mnist", headers=AUTH, data=body)
    assert r.status_code == 200
    np.testing.assert_allclose(protocol.decode_response(r.content)["scores"], scores(X), rtol=1e-5,
                               atol=1e-6)


# --- Open Inference Protocol (V2) ---------------------------------------------------------


def triton_python() -> str:
    path = os.environ.get("TRITON_PYTHON") or os.path.join(ROOT, ".venv-triton", "bin", "python")
    assert os.path.exists(path), f"tritonclient venv missing at {path}: run `make triton-venv`"
    return path


def triton(spec: Dict[str, Any]) -> Dict[str, Any]:
    proc = subprocess.run([triton_python(), os.path.join(TESTS, "triton_client.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


def images(x: np.ndarray, binary: bool) -> Dict[str, Any]:
    return {"name": "images", "shape": list(x.shape), "datatype": "FP32",
            "values": x.reshape(-1).tolist(), "binary": binary}


def test_tritonclient_unchanged(server: Server) -> None:
    reqs: List[Dict[str, Any]] = [
        {"inputs": [images(X, True)], "outputs": [{"name": "scores", "binary": True}], "id": "a"},
        {"inputs": [images(X, False)], "outputs": [{"name": "scores", "binary": False}]},
        {"inputs": [images(X[:1], True)], "outputs": None},  # no outputs named: all, binary
        {"inputs": [images(X[:1], False)], "outputs": None, "version": "1"},
        {"inputs": [images(X[:1], True)], "outputs": None, "version": "9"},
        {"inputs": [dict(images(X[:1], True), name="nope")], "outputs": None},
        {"inputs": [images(X[:1], True)], "outputs": None,
         "parameters": {"signature_name": "serving_default"}},  # classify: string input
        {"inputs": [images(X[:2], True)], "outputs": None, "compression": "gzip"},
        {"inputs": [images(X[:2], False)], "outputs": None, "compression": "deflate"},
    ]
    out = triton({"url": server.url[len("http://"):], "model": "mnist", "token": TOKEN,
                  "requests": reqs})
    assert out["live"] and out["ready"] and out["model_ready"]
    assert "binary_tensor_data" in out["server"]["extensions"]
    meta = out["metadata"]
    assert meta["name"] == "mnist" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 784]}]
    res = out["results"]
    for i, x in ((0, X), (1, X), (2, X[:1]), (3, X[:1]), (7, X[:2]), (8, X[:2])):
        assert res[i]["ok"], res[i]
        got = res[i]["outputs"]["scores"]
        assert got["datatype"] == "FP32" and got["shape"] == [len(x), 10]
        np.testing.assert_allclose(np.array(got["values"]).reshape(len(x), 10), scores(x),
                                   rtol=1e-5, atol=1e-6)
    # outputs not named: tritonclient asks for all of them binary (binary_data_output)
    assert [r["outputs"]["scores"]["binary"] for r in res[:4]] == [True, False, True, True]
    assert res[0]["id"] == "a" and res[0]["model_name"] == "mnist"
    assert not res[4]["ok"] and "version 9 not found" in res[4]["error"], res[4]
    assert not res[5]["ok"] and "unknown input 'nope'" in res[5]["error"]
    assert not res[6]["ok"] and "signature 'serving_default'" in res[6]["error"]


def test_v2_json_with_requests(server: Server) -> None:
    url = f"{server.url}/v2/models/mnist/infer"
    r = requests.post(url, headers=AUTH, json={"inputs": [
        {"name": "images", "shape": [2, 784], "datatype": "FP32", "data": X[:2].tolist()}]})
    assert r.status_code == 200, r.text
    (o,) = r.json()["outputs"]
    np.testing.assert_allclose(np.array(o["data"]).reshape(2, 10), scores(X[:2]), rtol=1e-5,
                               atol=1e-6)
    assert requests.get(f"{server.url}/v2/health/live").status_code == 200
    assert requests.get(f"{server.url}/v2/models/mnist/ready", headers=AUTH).json()["ready"]


SHORT = (b'{"inputs": [{"name": "images", "shape": [1, 784], "datatype": "FP32", '
         b'"parameters": {"binary_data_size": 3136}}]}')


@pytest.mark.parametrize("body,headers,msg", [
    (b"{", {}, "not valid JSON"),
    (b'{"inputs": {}}', {}, '"inputs" must be a list'),
    (b'{"inputs": [{"name": "images", "shape": [1, 784], "datatype": "FP32", "data": [1]}]}', {},
     "has 1 values"),
    (SHORT + b"\0" * 10, {"Inference-Header-Content-Length": str(len(SHORT))}, "runs past the body"),
    (b"{}", {"Inference-Header-Content-Length": "x"}, "not a length"),
])
def test_v2_errors_are_json(server: Server, body: bytes, headers: Dict[str, str], msg: str) -> None:
    r = requests.post(f"{server.url}/v2/models/mnist/infer", headers={**AUTH, **headers}, data=body)
    assert r.status_code == 400 and msg in r.json()["error"], r.text


def test_json_over_its_own_limit_is_413(models: Dict[str, str]) -> None:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "MAX_JSON_BYTES": "16KiB"})
    try:
        big = json.dumps({"signature_name": "predict_images", "instances": X.tolist()}).encode()
        r = requests.post(f"{s.url}/v1/models/m:predict", data=big)
        assert r.status_code == 413 and "MAX_JSON_BYTES" in r.json()["error"]
        head = json.dumps({"inputs": [{"name": "images", "shape": [3, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": X.nbytes}}]}).encode()
        r = requests.post(f"{s.url}/v2/models/m/infer", data=head + X.tobytes(),
                          headers={"Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 200, r.text  # binary tensors do not count as JSON
    finally:
        s.stop()


def test_v2_bytes_binary_round_trip(models: Dict[str, str]) -> None:
    """BYTES in the binary extension (length-prefixed), through a model that echoes strings."""
    s = Server({"MODEL_PATH": models["multi"]})
    try:
        items = [b"a", b"\x00\xff", b""]
        blob = b"".join(struct.pack("<I", len(v)) + v for v in items)
        ints = np.array([[1, -2]], np.int32)
        head = json.dumps({"parameters": {"signature_name": "echo", "binary_data_output": True},
                           "inputs": []}).encode()
        doc = json.loads(head)
        sig = requests.get(f"{s.url}/v1/models/any/metadata").json()
        echo = sig["metadata"]["signature_def"]["signature_def"]["echo"]["inputs"]
        inputs, blobs = [], []
        for name, spec in sorted(echo.items()):
            if spec["dtype"] == "DT_STRING":
                inputs.append({"name": name, "shape": [1, 3], "datatype": "BYTES",
                               "parameters": {"binary_data_size": len(blob)}})
                blobs.append(blob)
            else:
                dt = {"DT_FLOAT": "<f4", "DT_DOUBLE": "<f8", "DT_INT32": "<i4", "DT_INT64": "<i8",
                      "DT_UINT8": "u1", "DT_INT8": "i1", "DT_INT16": "<i2", "DT_UINT16": "<u2",
                      "DT_BOOL": "?"}[spec["dtype"]]
                v = np.abs(ints).astype(dt)
                inputs.append({"name": name, "shape": [1, 2],
                               "datatype": {"<f4": "FP32", "<f8": "FP64", "<i4": "INT32",
                                            "<i8": "INT64", "u1": "UINT8", "i1": "INT8",
                                            "<i2": "INT16", "<u2": "UINT16", "?": "BOOL"}[dt],
                               "parameters": {"binary_data_size": v.nbytes}})
                blobs.append(v.tobytes())
        doc["inputs"] = inputs
        head = json.dumps(doc).encode()
        r = requests.post(f"{s.url}/v2/models/any/infer", data=head + b"".join(blobs),
                          headers={"Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 200, r.text
        n = int(r.headers["Inference-Header-Content-Length"])
        reply, raw = json.loads(r.content[:n]), r.content[n:]
        pos, seen = 0, {}
        for o in reply["outputs"]:
            size = o["parameters"]["binary_data_size"]
            seen[o["name"]] = (o["datatype"], raw[pos:pos + size])
            pos += size
        assert pos == len(raw)
        strings = [k for k, (dt, _) in seen.items() if dt == "BYTES"]
        assert strings and all(seen[k][1] == blob for k in strings)
    finally:
        s.stop()


# --- the EAS path's bad-input list, in TF Serving's and V2's JSON ---------------------------


@pytest.fixture(scope="module")
def multi(models: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["multi"], "MAX_BODY_BYTES": "1MiB"})
    yield s
    s.stop()


def v2_input(name: str, shape: List[int], data: Any, datatype: str = "FP32") -> Dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def v2_body(*inputs: Dict[str, Any], **extra: Any) -> bytes:
    return json.dumps(dict({"inputs": list(inputs)}, **extra)).encode()


A3 = [[0.0, 0.0, 0.0]]
B = v2_input("b", [1, 3], [0, 0, 0])
BAD_JSON = [
    ("tfs", "random bytes", b"\xff\xfe\xfd\xfc" * 10, "not valid JSON"),
    ("tfs", "truncated", b'{"instances": [{"a": [1, 2, 3], "b": [1, 2', "not valid JSON"),
    ("tfs", "unknown signature", b'{"signature_name": "nope", "inputs": {}}',
     "unknown signature_name 'nope'"),
    ("tfs", "unknown input", json.dumps({"inputs": {"a": A3, "b": A3, "c": A3}}).encode(),
     "unknown input 'c'"),
    ("tfs", "missing input", json.dumps({"inputs": {"a": A3}}).encode(), "missing input 'b'"),
    ("tfs", "string for numeric", json.dumps({"inputs": {"a": [["x", "y", "z"]], "b": A3}}).encode(),
     "input 'a' holds strings"),
    ("tfs", "ragged", json.dumps({"inputs": {"a": [[1, 2, 3], [1]], "b": A3}}).encode(), "ragged"),
    ("tfs", "too deep", b'{"inputs": {"a": ' + b"[" * 40 + b"1" + b"]" * 40 + b', "b": [[0,0,0]]}}',
     "input 'a' has rank over 32"),
    ("tfs", "wrong dim", json.dumps({"inputs": {"a": [[1, 2, 3, 4]], "b": A3}}).encode(),
     "the model rejected the input"),
    ("tfs", "value the model rejects", b'{"signature_name": "check", "inputs": [1, -1]}',
     "the model rejected the input"),
    ("v2", "random bytes", b"\xff\xfe\xfd\xfc" * 10, "not valid JSON"),
    ("v2", "unknown signature", v2_body(B, parameters={"signature_name": "nope"}),
     "unknown signature_name 'nope'"),
    ("v2", "unknown input", v2_body(B, v2_input("a", [1, 3], [0] * 3), v2_input("c", [1], [0])),
     "unknown input 'c'"),
    ("v2", "missing input", v2_body(B), "missing input 'a'"),
    ("v2", "dtype mismatch", v2_body(B, v2_input("a", [1, 3], [0] * 3, "FP64")),
     "input 'a' has dtype DT_DOUBLE; signature 'serving_default' expects DT_FLOAT"),
    ("v2", "count mismatch", v2_body(B, v2_input("a", [1, 3], [1, 2])), "shape [1, 3] needs 3"),
    ("v2", "absurd dims", v2_body(B, v2_input("a", [1_000_000_000, 3], [1, 2, 3])),
     "needs 3000000000"),
    ("v2", "overflowing dims", v2_body(B, v2_input("a", [1 << 62, 1 << 62, 16], [])),
     "non-negative integers"),
    ("v2", "negative dims", v2_body(B, v2_input("a", [-3, 3], [])), "non-negative integers"),
    ("v2", "too many inputs", v2_body(*[v2_input(f"n{i}", [1], [0]) for i in range(5000)]),
     "1 to 4096 tensors"),
    ("v2", "wrong dim", v2_body(B, v2_input("a", [1, 4], [0] * 4)),
     "the model rejected the input"),
    ("v2", "unknown output", v2_body(B, v2_input("a", [1, 3], [0] * 3), outputs=[{"name": "prod"}]),
     "unknown output 'prod'"),
    ("v2", "value the model rejects", v2_body(v2_input("x", [2], [1, -1], "INT32"),
                                              parameters={"signature_name": "check"}),
     "the model rejected the input"),
]


def test_shapes_other_than_declared_reach_the_model(multi: Server) -> None:
    """As TF Serving: a rank-1 ``a`` beside a [1, 3] ``b`` (both declared [-1, 3]) is the
    graph's to answer, and it broadcasts; rows as instances of rank 1 too."""
    r = requests.post(multi.url + "/v1/models/m:predict",
                      json={"inputs": {"a": [1.0, 2.0, 3.0], "b": [[1.0, 1.0, 1.0]]}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"sum": [[2.0, 3.0, 4.0]], "diff": [[0.0, 1.0, 2.0]]}
    r = requests.post(multi.url + "/v1/models/m:predict",
                      json={"signature_name": "fixed", "instances": [1.0, 2.0, 3.0]})
    assert r.status_code == 200 and r.json() == {"predictions": [2.0, 4.0, 6.0]}, r.text
    r = requests.post(multi.url + "/v2/models/m/infer", data=v2_body(
        v2_input("a", [3], [1, 2, 3]), v2_input("b", [1, 3], [1, 1, 1]), outputs=[{"name": "sum"}]))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [1, 3] and out["data"] == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("proto,name,body,msg", BAD_JSON, ids=[f"{b[0]}-{b[1]}" for b in BAD_JSON])
def test_bad_input_is_400_with_json_error(multi: Server, proto: str, name: str, body: bytes,
                                          msg: str) -> None:
    path = "/v1/models/m:predict" if proto == "tfs" else "/v2/models/m/infer"
    r = requests.post(multi.url + path, data=body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert msg in r.json()["error"], r.text
    assert "\n" not in r.json()["error"]


def test_oversized_json_is_413_and_server_keeps_serving(multi: Server) -> None:
    big = json.dumps({"inputs": {"a": [[0.5, 0.5, 0.5]] * 100_000, "b": A3}}).encode()
    r = requests.post(multi.url + "/v1/models/m:predict", data=big)
    assert r.status_code == 413 and "limit of 1048576 bytes" in r.json()["error"]
    r = requests.post(multi.url + "/v1/models/m:predict",
                      json={"inputs": {"a": [[1, 1, 1]], "b": A3}})
    assert r.status_code == 200 and r.json()["outputs"]["sum"] == [[1.0, 1.0, 1.0]]
