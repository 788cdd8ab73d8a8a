"""End to end: a real functions-framework server, real SavedModels, the official EAS SDK."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest
import requests

from tfserverless import protocol
from tfserverless.serving.auth import eas_signature

from ..conftest import PYTHON, ROOT, Server, eas_call
from ..models import ECHO_DTYPES, mnist_weights
from ..protocol.test_eas import key, ld, varint

TOKEN = "s3cr3t-token-value"
SERVICE = "mnist"


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def has_asgi_mode() -> bool:
    try:
        import functions_framework.aio  # noqa: F401
    except ImportError:
        return False
    return True


def serves_asgi(target: str) -> bool:
    """Whether ``target`` runs on an ASGI server here (it can see disconnects, time bodies)."""
    from tfserverless.server import worker_class

    return (target == "predict" and has_asgi_mode()) or (target == "app" and bool(worker_class()))


# every test here runs on every HTTP entry (conftest's ``target``)
@pytest.fixture(scope="module")
def mnist_server(models: Dict[str, str], target: str) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                "SERVICE_NAME": SERVICE}, target=target)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def multi_server(models: Dict[str, str], target: str) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["multi"], "MAX_BODY_BYTES": "1MiB"}, target=target)
    yield s
    s.stop()


def test_target_serves_on_the_expected_server(mnist_server: Server, target: str) -> None:
    asgi = serves_asgi(target)
    r = requests.get(mnist_server.url + "/healthz")
    assert r.headers.get("server") == ("uvicorn" if asgi else "gunicorn"), r.headers
    # the fast HTTP parser is what makes the ASGI server worth it; it must be installed
    if asgi:
        import httptools  # noqa: F401


def gateway(server: Server) -> str:
    return f"{server.url}/api/predict/{SERVICE}"


MNIST_SCHEMA = {
    "inputs": [{"name": "images", "shape": [-1, 784], "type": "DT_FLOAT"}],
    "outputs": [{"name": "scores", "shape": [-1, 10], "type": "DT_FLOAT"}],
    "signature_name": "predict_images",
}


def test_schema_on_empty_body_and_get(mnist_server: Server) -> None:
    auth = {"Authorization": TOKEN}
    for r in (
        requests.post(gateway(mnist_server), data=b"", headers=auth),
        requests.get(gateway(mnist_server), headers=auth),
        requests.get(mnist_server.url + "/", headers=auth),
    ):
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.json() == MNIST_SCHEMA
    r = requests.get(gateway(mnist_server) + "?signature_name=serving_default", headers=auth)
    assert r.json()["signature_name"] == "serving_default"
    assert r.json()["inputs"] == [{"name": "inputs", "shape": [], "type": "DT_STRING"}] or \
        r.json()["inputs"][0]["type"] == "DT_STRING"


def test_health_reports_loaded_model(mnist_server: Server) -> None:
    r = requests.get(mnist_server.url + "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}  # with SERVICE_TOKEN set, details need the token
    r = requests.get(mnist_server.url + "/healthz", headers={"Authorization": TOKEN})
    body = r.json()
    assert body["status"] == "ready" and body["default_signature"] == "predict_images"
    assert TOKEN not in r.text
    assert requests.get(mnist_server.url + "/healthz/live").json()["status"] == "alive"


def _mnist_expected(x: np.ndarray) -> np.ndarray:
    w = mnist_weights()
    return softmax(x @ w["w"] + w["b"])


def test_sdk_gateway_path_signed_token(mnist_server: Server) -> None:
    x = np.random.RandomState(1).rand(3, 784).astype(np.float32)
    [res] = eas_call({
        "endpoint": mnist_server.url, "service": SERVICE, "token": TOKEN,
        "requests": [{"signature": "predict_images",
                      "feeds": [{"name": "images", "shape": [3, 784], "dtype": 1,
                                 "values": x.reshape(-1).tolist()}]}],
    })
    assert res["ok"], res
    out = res["outputs"]["scores"]
    assert out["shape"] == [3, 10] and out["dtype"] == 1
    np.testing.assert_allclose(np.array(out["values"]).reshape(3, 10), _mnist_expected(x),
                               rtol=1e-5, atol=1e-6)


def test_sdk_custom_url_raw_token_and_default_signature(mnist_server: Server) -> None:
    x = np.random.RandomState(2).rand(1, 784).astype(np.float32)
    [res] = eas_call({
        "custom_url": mnist_server.url + "/", "token": TOKEN,
        "requests": [{"signature": "",
                      "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1,
                                 "values": x.reshape(-1).tolist()}]}],
    })
    assert res["ok"], res
    np.testing.assert_allclose(np.array(res["outputs"]["scores"]["values"]).reshape(1, 10),
                               _mnist_expected(x), rtol=1e-5, atol=1e-6)


def test_sdk_wrong_token_is_401_once(mnist_server: Server) -> None:
    feeds = [{"name": "images", "shape": [1, 784], "dtype": 1, "values": [0.0] * 784}]
    results = eas_call({"endpoint": mnist_server.url, "service": SERVICE, "token": "wrong",
                        "retry_count": 3, "requests": [{"feeds": feeds}]})
    assert results[0]["status"] == 401 and "signature does not match" in results[0]["body"]
    results = eas_call({"custom_url": mnist_server.url + "/", "token": "wrong",
                        "requests": [{"feeds": feeds}]})
    assert results[0]["status"] == 401 and "does not match the service token" in results[0]["body"]


def test_auth_rules_over_raw_http(mnist_server: Server) -> None:
    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)})
    r = requests.post(gateway(mnist_server), data=body)
    assert r.status_code == 401 and "missing Authorization" in r.text
    r = requests.post(gateway(mnist_server), data=body, headers={"Authorization": "nope"})
    assert r.status_code == 401
    # curl-style raw token on the gateway path works
    r = requests.post(gateway(mnist_server), data=body, headers={"Authorization": TOKEN})
    assert r.status_code == 200
    # a signature over another body (Content-MD5 of something else) is refused
    import hashlib
    md5 = hashlib.md5(b"other").hexdigest()
    date = "Mon, 01 Jan 2024 00:00:00 GMT"
    sig = eas_signature(TOKEN, method="POST", content_md5=md5,
                        content_type="application/octet-stream", date=date,
                        resource="/api/predict/" + SERVICE)
    r = requests.post(gateway(mnist_server), data=body, headers={
        "Authorization": sig, "Content-MD5": md5, "Date": date,
        "Content-Type": "application/octet-stream"})
    assert r.status_code == 401 and "Content-MD5" in r.text
    for r in (requests.get(mnist_server.url + "/healthz"),):
        assert TOKEN not in r.text
    # a Content-MD5 of non-ASCII bytes is a client's mistake: 401, never a 500
    r = requests.post(gateway(mnist_server), data=body, headers={
        "Authorization": "EAS abc", "Content-MD5": "\u00e9\u00e9".encode("latin-1"), "Date": date})
    assert r.status_code == 401 and "Content-MD5" in r.text
    r = requests.post(gateway(mnist_server), data=body, headers={
        "Authorization": "EAS \u00e9".encode("latin-1"), "Date": "\u00ff".encode("latin-1")})
    assert r.status_code == 401


def test_unknown_service_and_paths(mnist_server: Server) -> None:
    r = requests.post(mnist_server.url + "/api/predict/other", headers={"Authorization": TOKEN})
    assert r.status_code == 404 and "service 'other' not found" in r.text
    # without the token a wrong service is a 401: the real name is for token holders only
    r = requests.post(mnist_server.url + "/api/predict/other", data=b"x")
    assert r.status_code == 401 and SERVICE not in r.text
    r = requests.get(mnist_server.url + "/nope")
    assert r.status_code == 404 and "expected POST" in r.text
    r = requests.put(gateway(mnist_server), data=b"x", headers={"Authorization": TOKEN})
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = requests.post(mnist_server.url + "/healthz")
    assert r.status_code == 405


def test_output_filter_and_multiple_inputs_via_sdk(multi_server: Server) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    feeds = [{"name": "a", "shape": [2, 3], "dtype": 1, "values": a.reshape(-1).tolist()},
             {"name": "b", "shape": [2, 3], "dtype": 1, "values": b.reshape(-1).tolist()}]
    res = eas_call({"custom_url": multi_server.url + "/", "requests": [
        {"signature": "", "feeds": feeds},
        {"signature": "serving_default", "feeds": feeds, "fetch": ["diff"]},
    ]})
    assert res[0]["ok"] and set(res[0]["outputs"]) == {"sum", "diff"}
    assert res[0]["outputs"]["sum"]["values"] == (a + b).reshape(-1).tolist()
    assert res[1]["ok"] and set(res[1]["outputs"]) == {"diff"}
    assert res[1]["outputs"]["diff"]["values"] == (a - b).reshape(-1).tolist()


def _echo_inputs(rng: np.random.RandomState) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    for name, (_, npdt) in ECHO_DTYPES.items():
        if npdt == "object":
            arr = np.array([b"a", b"\x00\xffbin", b"", "ünï".encode()], dtype=object)
        elif npdt == "bool":
            arr = rng.rand(4) > 0.5
        elif npdt.startswith("float"):
            arr = (rng.randn(4) * 1000).astype(npdt)
        else:
            info = np.iinfo(npdt)
            arr = np.array([info.min, info.max, 0, 1], dtype=npdt)
        out[name] = arr.reshape(2, 2)
    return out


def test_every_dtype_round_trips_over_http(multi_server: Server, predict_pb2: Any) -> None:
    inputs = _echo_inputs(np.random.RandomState(3))
    body = protocol.encode_request(inputs, signature_name="echo")
    r = requests.post(multi_server.url + "/", data=body)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    msg = predict_pb2.PredictResponse()
    msg.ParseFromString(r.content)  # protobuf itself accepts our reply
    got = protocol.decode_response(r.content)
    half = np.array([[1.5, -0.25]], np.float16)
    r = requests.post(multi_server.url + "/", data=protocol.encode_request({"x": half},
                                                                          signature_name="half"))
    assert np.array_equal(protocol.decode_response(r.content)["y"], half)
    for name, arr in inputs.items():
        out = got[name + "_out"]
        assert out.dtype == arr.dtype and out.shape == arr.shape, name
        assert np.array_equal(out, arr), name
        assert msg.outputs[name + "_out"].dtype == protocol.dtype_for_numpy(arr).code


def test_sdk_dtypes_round_trip(multi_server: Server) -> None:
    """Every dtype the SDK's add_feed can send goes through the SDK and comes back equal."""
    inputs = _echo_inputs(np.random.RandomState(4))
    feeds = []
    for name, arr in inputs.items():
        values: List[Any] = arr.reshape(-1).tolist()
        if name == "s":
            values = [v.decode("latin-1") for v in arr.reshape(-1)]
        feeds.append({"name": name, "shape": [2, 2], "dtype": protocol.dtype_for_numpy(arr).code,
                      "values": values})
    [res] = eas_call({"custom_url": multi_server.url + "/",
                      "requests": [{"signature": "echo", "feeds": feeds}]})
    assert res["ok"], res
    for f in feeds:
        out = res["outputs"][f["name"] + "_out"]
        assert out["dtype"] == f["dtype"] and out["shape"] == [2, 2], f["name"]
        if f["name"] in ("f32", "f64"):
            assert np.array_equal(np.array(out["values"], inputs[f["name"]].dtype),
                                  inputs[f["name"]].reshape(-1)), f["name"]
        else:
            assert out["values"] == f["values"], f["name"]


def test_half_round_trips_as_16_bit_patterns(multi_server: Server, predict_pb2: Any) -> None:
    x = np.array([[0.5, -2.0], [65504.0, 1e-4]], np.float16)
    r = _post(multi_server, _req({"x": x}, signature_name="half"))
    assert r.status_code == 200, r.text
    msg = predict_pb2.PredictResponse()
    msg.ParseFromString(r.content)
    assert msg.outputs["y"].dtype == 19
    assert list(msg.outputs["y"].int_val) == x.view(np.uint16).reshape(-1).tolist()
    # a DT_INT32 feed for a half input is a clear 400, as the SDK cannot say DT_HALF
    r = _post(multi_server, _req({"x": x.view(np.uint16).astype(np.int32)}, signature_name="half"))
    assert r.status_code == 400 and "expects DT_HALF" in r.text


def _post(server: Server, body: bytes, **kw: Any) -> requests.Response:
    return requests.post(server.url + "/", data=body, **kw)


def _req(inputs: Dict[str, np.ndarray], **kw: Any) -> bytes:
    return protocol.encode_request(inputs, **kw)


A = np.zeros((1, 3), np.float32)
B_ENTRY = ld(2, ld(1, b"b") + ld(2, protocol.encode_array(A)))  # a valid input "b"


BAD = [
    ("random bytes", b"\xff\xfe\xfd\xfc" * 10, "malformed protobuf body"),
    ("truncated", _req({"a": A, "b": A})[:-7], "malformed protobuf body"),
    ("unknown signature", _req({"a": A, "b": A}, signature_name="nope"),
     "unknown signature_name 'nope'; expected one of 'check', 'echo', 'expand', 'fixed', 'half'"),
    ("unknown input", _req({"a": A, "b": A, "c": A}), "unknown input 'c'"),
    ("missing input", _req({"a": A}), "missing input 'b'"),
    ("dtype mismatch", _req({"a": A.astype(np.float64), "b": A}),
     "input 'a' has dtype DT_DOUBLE; signature 'serving_default' expects DT_FLOAT"),
    ("string for numeric", _req({"a": np.array([[b"x", b"y", b"z"]], dtype=object), "b": A}),
     "input 'a' has dtype DT_STRING"),
    ("count mismatch",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(1) + ld(2, ld(1, varint(1) + varint(3)))
                         + ld(3, struct.pack("<2f", 1, 2)))) + B_ENTRY,
     "has 2 values in float_val but shape [1, 3] needs 3"),
    ("absurd dims",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(1) +
                         ld(2, ld(1, varint(1_000_000_000) + varint(3))) +
                         ld(3, struct.pack("<3f", 1, 2, 3)))) + B_ENTRY,
     "needs 3000000000"),
    ("overflowing dims",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(1) +
                         ld(2, ld(1, varint(1 << 62) + varint(1 << 62) + varint(16))))) + B_ENTRY,
     "expected sizes from 0 to"),
    ("dims that overflow past a zero",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(1) +
                         ld(2, ld(1, varint(0) + varint(1 << 40) + varint(1 << 40))))) + B_ENTRY,
     "over 1099511627776 elements"),
    ("too many inputs", b"".join(ld(2, ld(1, b"n%d" % i)) for i in range(5000)),
     "more than 4096 inputs"),
    ("negative dims",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(1) + ld(2, ld(1, varint(-3) + varint(3))))) + B_ENTRY,
     "has dimension -3"),
    # a shape other than the declared [-1, 3] reaches the model (as in TF Serving), which
    # cannot add [1, 4] to [1, 3]: its own words, in one line (OFF_SHAPE: shapes it takes)
    ("wrong dim", _req({"a": np.zeros((1, 4), np.float32), "b": A}),
     "the model rejected the input"),
    ("unknown output_filter", _req({"a": A, "b": A}, output_filter=["sum", "prod"]),
     "unknown output_filter 'prod'"),
    ("invalid dtype enum",
     ld(2, ld(1, b"a") + ld(2, key(1, 0) + varint(77))) + B_ENTRY,
     "dtype enum value 77"),
    ("json body", b'{"inputs": {"a": [[1,2,3]]}}', "JSON bodies are not accepted"),
    ("value the model rejects", _req({"x": np.array([1, -1], np.int32)}, signature_name="check"),
     "the model rejected the input"),
]


@pytest.mark.parametrize("name,body,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_4xx_with_one_line(multi_server: Server, name: str, body: bytes,
                                        msg: str) -> None:
    r = _post(multi_server, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert msg in r.text, r.text
    assert r.text.count("\n") == 1


F32 = np.float32
#: shapes other than the signature declares (serving_default: a, b [-1, 3]; fixed: x [2, 3]),
#: which TF Serving hands to the graph and the graph answers: (case, signature, inputs,
#: output, TensorFlow's answer).  LiteRT resizes dimensions, not ranks (test_litert).
OFF_SHAPE = [
    ("rank 1 beside rank 2", "serving_default",
     {"a": np.array([1, 2, 3], F32), "b": np.ones((1, 3), F32)}, "sum", np.array([[2, 3, 4]], F32)),
    ("rank 10", "serving_default",
     {"a": np.ones((1,) * 9 + (3,), F32), "b": np.ones((1, 3), F32)}, "sum",
     np.full((1,) * 9 + (3,), 2, F32)),
    ("3 rows where [2, 3] is fixed", "fixed", {"x": np.ones((3, 3), F32)}, "y", np.full((3, 3), 2, F32)),
    ("rank 1 where [2, 3] is fixed", "fixed", {"x": np.arange(3, dtype=F32)}, "y",
     np.arange(3, dtype=F32) * 2),
]


@pytest.mark.parametrize("name,sig,inputs,output,want", OFF_SHAPE, ids=[c[0] for c in OFF_SHAPE])
def test_shapes_other_than_declared_are_the_models_to_answer(
        multi_server: Server, name: str, sig: str, inputs: Dict[str, np.ndarray], output: str,
        want: np.ndarray) -> None:
    r = _post(multi_server, _req(inputs, signature_name=sig))
    assert r.status_code == 200, r.text
    got = protocol.decode_response(r.content)[output]
    assert got.shape == want.shape and np.array_equal(got, want)


def test_oversized_body_is_413_and_server_keeps_serving(multi_server: Server) -> None:
    big = _req({"a": np.zeros((100_000, 3), np.float32), "b": A})
    r = _post(multi_server, big)
    assert r.status_code == 413 and "limit of 1048576 bytes" in r.text
    # chunked upload with no Content-Length is bounded the same way
    r = _post(multi_server, iter([big[i:i + 65536] for i in range(0, len(big), 65536)]))
    assert r.status_code == 413
    r = _post(multi_server, _req({"a": A + 1, "b": A}))
    assert r.status_code == 200
    assert protocol.decode_response(r.content)["sum"].tolist() == [[1, 1, 1]]
    assert requests.get(multi_server.url + "/healthz").status_code == 200


def test_client_gone_mid_body_leaves_server_serving(multi_server: Server) -> None:
    body = _req({"a": A, "b": A})
    with socket.create_connection(("127.0.0.1", multi_server.port), timeout=10) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (len(body) * 10)
                     + body[:5])
    r = _post(multi_server, body)
    assert r.status_code == 200, r.text
    assert "Traceback" not in multi_server.log()


def test_scalar_signature(multi_server: Server) -> None:
    r = _post(multi_server, _req({"x": np.array(2.5, np.float32)}, signature_name="scalar"))
    assert r.status_code == 200, r.text
    assert protocol.decode_response(r.content)["y"].tolist() == 3.5


def test_unloadable_model_is_503_and_health_503(start_server: Any, tmp_path: Any, target: str) -> None:
    (tmp_path / "empty").mkdir()
    s = start_server({"MODEL_PATH": str(tmp_path / "empty")}, wait_ready=False, target=target)
    s.wait_ready(status=503)
    r = requests.post(s.url + "/", data=_req({"a": A}))
    assert r.status_code == 503 and "expected a SavedModel" in r.text
    assert int(r.headers["Retry-After"]) >= 1
    h = requests.get(s.url + "/healthz").json()
    assert h["status"] == "failed" and "expected a SavedModel" in h["error"]


def test_missing_local_model_stops_the_start_with_one_line(tmp_path: Any) -> None:
    proc = subprocess.run([PYTHON, "-m", "tfserverless", "serve", "--port", "1"],
                          env=dict(os.environ, MODEL_PATH=str(tmp_path / "nothing-here")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "nothing-here' does not exist" in proc.stderr


@pytest.mark.parametrize("env,msg", [
    ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES='lots' is not a size"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD' is not a log level"),
    ({"MODEL_PATH": ""}, "MODEL_PATH is not set"),
])
def test_bad_config_fails_at_start_with_one_line(env: Dict[str, str], msg: str) -> None:
    full = dict(os.environ, MODEL_PATH="/tmp/x")
    full.update(env)
    proc = subprocess.run([PYTHON, "-c", "import runpy; runpy.run_path('handler/main.py')"],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"tfserverless: configuration error: {msg}"] or \
        msg in proc.stderr.strip().splitlines()[-1]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def test_adversarial_layout_decodes_in_bounded_memory(multi_server: Server) -> None:
    """1 MB of int32 values, each unpacked and followed by an unknown field: this took 4.9 s and
    +500 MB of worker memory; now it is answered correctly with little memory."""
    n = 250_000
    body = ld(2, ld(1, b"x") + ld(2, key(1, 0) + varint(3) + ld(2, ld(1, varint(n))) +
                                   b"\x28\x03\x48\x01" * n))
    body = ld(1, b"check") + body
    pid = requests.get(multi_server.url + "/healthz").json()["pid"]
    before = _rss(pid)
    r = _post(multi_server, body)
    assert r.status_code == 200, r.text
    y = protocol.decode_response(r.content)["y"]
    assert y.shape == (n,) and int(y.min()) == int(y.max()) == 6
    assert _rss(pid) - before < 64 << 20, (_rss(pid) - before) >> 20


def test_signature_max_skew_refuses_stale_dates(start_server: Any, models: Dict[str, str]) -> None:
    s = start_server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                      "SIGNATURE_MAX_SKEW": "300"})
    import email.utils
    import hashlib
    import time

    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)})
    md5 = hashlib.md5(body).hexdigest()

    def signed(date: str) -> requests.Response:
        sig = eas_signature(TOKEN, method="POST", content_md5=md5,
                            content_type="application/octet-stream", date=date,
                            resource="/api/predict/" + SERVICE)
        return requests.post(f"{s.url}/api/predict/{SERVICE}", data=body, headers={
            "Authorization": sig, "Content-MD5": md5, "Date": date,
            "Content-Type": "application/octet-stream"})

    assert signed(email.utils.formatdate(time.time(), usegmt=True)).status_code == 200
    r = signed(email.utils.formatdate(time.time() - 3600, usegmt=True))
    # HTTP dates drop the fraction of a second: an hour old prints as 3600 or 3601 s
    assert r.status_code == 401 and "SIGNATURE_MAX_SKEW" in r.text
    assert re.search(r"signed Date is 360[01]s old", r.text), r.text
    r = signed("yesterday")
    assert r.status_code == 401 and "not an HTTP date" in r.text
    # the raw token carries no date: not subject to the check
    r = requests.post(s.url + "/", data=body, headers={"Authorization": TOKEN})
    assert r.status_code == 200
