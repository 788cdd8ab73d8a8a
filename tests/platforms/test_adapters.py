"""Every platform adapter, fed the platforms' published event shapes, behaves the same as the
functions-framework server over real HTTP: schema, predict, auth, errors, status codes."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import requests

from tfserverless import protocol
from tfserverless.serving.service import Service

from ..conftest import Server
from ..models import mnist_weights
from .conftest import PLATFORMS, SERVICE, TOKEN, caller_for, make_service, signed

X = np.random.RandomState(11).rand(2, 784).astype(np.float32)
BODY = protocol.encode_request({"images": X}, signature_name="predict_images")
GATEWAY = "/api/predict/" + SERVICE
RAW = {"Authorization": TOKEN}
TFS_BODY = json.dumps({"signature_name": "predict_images", "instances": X.tolist()}).encode()
V2_JSON = json.dumps({"inputs": [{"name": "images", "shape": [2, 784], "datatype": "FP32",
                                  "data": X.reshape(-1).tolist()}]}).encode()
_V2_HEAD = json.dumps({"inputs": [{"name": "images", "shape": [2, 784], "datatype": "FP32",
                                   "parameters": {"binary_data_size": X.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
V2_BINARY = _V2_HEAD + X.tobytes()
V2_HEADERS = dict(RAW, **{"Inference-Header-Content-Length": str(len(_V2_HEAD))})

CASES: List[Tuple[str, str, str, Dict[str, str], bytes, int]] = [
    ("schema on empty body", "POST", GATEWAY, RAW, b"", 200),
    ("schema on GET", "GET", GATEWAY, RAW, b"", 200),
    ("predict, signed", "POST", GATEWAY, signed(BODY), BODY, 200),
    ("predict, raw token on /", "POST", "/", RAW, BODY, 200),
    ("health", "GET", "/healthz", {}, b"", 200),
    ("health, with the token", "GET", "/healthz", RAW, b"", 200),
    ("liveness", "GET", "/healthz/live", {}, b"", 200),
    ("missing token", "POST", GATEWAY, {}, BODY, 401),
    ("bad signature", "POST", GATEWAY, signed(b"other"), BODY, 401),
    ("malformed body", "POST", GATEWAY, RAW, b"\xff\xff\xff", 400),
    ("json body", "POST", GATEWAY, RAW, b'{"images": []}', 400),
    ("unknown signature", "POST", GATEWAY, RAW,
     protocol.encode_request({"images": X}, signature_name="nope"), 400),
    ("unknown service", "POST", "/api/predict/other", RAW, BODY, 404),
    ("unknown path", "GET", "/nowhere", {}, b"", 404),
    ("wrong method", "DELETE", GATEWAY, RAW, b"", 405),
    # TF Serving REST and the V2 protocol, on the same function
    ("tfs predict", "POST", "/v1/models/mnist:predict", RAW, TFS_BODY, 200),
    ("tfs status", "GET", "/v1/models/mnist", RAW, b"", 200),
    ("tfs metadata", "GET", "/v1/models/mnist/metadata", RAW, b"", 200),
    ("tfs bad json", "POST", "/v1/models/mnist:predict", RAW, b"{", 400),
    ("tfs missing token", "POST", "/v1/models/mnist:predict", {}, TFS_BODY, 401),
    ("v2 infer json", "POST", "/v2/models/mnist/infer", RAW, V2_JSON, 200),
    ("v2 infer binary", "POST", "/v2/models/mnist/infer", V2_HEADERS, V2_BINARY, 200),
    ("v2 ready", "GET", "/v2/health/ready", {}, b"", 200),
    ("v2 metadata", "GET", "/v2/models/mnist", RAW, b"", 200),
    ("v2 bad input", "POST", "/v2/models/mnist/infer", RAW, b'{"inputs": 1}', 400),
]


def want_softmax(x: np.ndarray) -> np.ndarray:
    w = mnist_weights()
    z = x @ w["w"] + w["b"]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def http_server(models: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                "SERVICE_NAME": SERVICE})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def reference(http_server: Server) -> Dict[str, Tuple[int, bytes]]:
    """What the functions-framework server answers each case over real HTTP."""
    out = {}
    for name, method, path, headers, body, _ in CASES:
        r = requests.request(method, http_server.url + path, headers=headers, data=body)
        out[name] = (r.status_code, r.content)
    return out


def _comparable(name: str, body: bytes) -> bytes:
    """Health JSON without what differs per process or run: pid, measured seconds, counters."""
    if name.startswith(("health", "liveness")):
        import json

        data = json.loads(body)
        data.pop("pid", None)
        data.pop("queue", None)
        if "warm_up" in data:
            data["warm_up"].pop("seconds", None)
        return json.dumps(data, sort_keys=True).encode()
    return body


@pytest.mark.parametrize("platform", PLATFORMS)
def test_same_answers_as_http(platform: str, mnist_service: Service,
                              reference: Dict[str, Tuple[int, bytes]]) -> None:
    call = caller_for(platform, mnist_service)
    for name, method, path, headers, body, want in CASES:
        status, reply_headers, reply = call(method, path, headers, body)
        assert status == want, (name, status, reply[:200])
        ref_status, ref_body = reference[name]
        assert (status, _comparable(name, reply)) == (ref_status, _comparable(name, ref_body)), name
        if name.startswith("predict"):
            assert reply_headers["Content-Type"] == "application/octet-stream"
            scores = protocol.decode_response(reply)["scores"]
            np.testing.assert_allclose(scores, want_softmax(X), rtol=1e-5, atol=1e-6)
        elif name == "v2 infer binary":  # the JSON header's length passes through the adapter
            n = int({k.lower(): v for k, v in reply_headers.items()}["inference-header-content-length"])
            got = np.frombuffer(reply[n:], "<f4").reshape(2, 10)
            np.testing.assert_allclose(got, want_softmax(X), rtol=1e-5, atol=1e-6)
        elif status >= 400 and name.startswith(("tfs", "v2")):
            assert reply_headers["Content-Type"] == "application/json" and json.loads(reply)["error"]
        elif status >= 400:
            assert reply.count(b"\n") == 1 and reply_headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_query_picks_schema_signature(platform: str, mnist_service: Service) -> None:
    call = caller_for(platform, mnist_service)
    status, _, body = call("GET", GATEWAY, RAW, b"", {"signature_name": "serving_default"})
    assert status == 200 and b'"signature_name": "serving_default"' in body


@pytest.fixture(scope="module")
def multi_service(models: Dict[str, str]) -> Iterator[Service]:
    s = make_service(models["multi"], SERVICE_TOKEN="", SERVICE_NAME="")
    yield s
    s.holder.model.close()


@pytest.mark.parametrize("platform", ["apigw_v2_http", "alb", "fc3_http"])
def test_platform_payload_limits(platform: str, multi_service: Service) -> None:
    call = caller_for(platform, multi_service)
    # a request that fits but whose reply (the input tiled 4 times) does not
    n = (2 << 20) // 4 if platform != "fc3_http" else (8 << 20) // 4
    x = np.ones(n, np.float32)
    status, _, body = call("POST", "/", {}, protocol.encode_request({"x": x}, signature_name="expand"))
    assert status == 413, body[:300]
    assert b"response of" in body and (b"AWS Lambda's 6 MB" in body or b"Function Compute" in body)
    # and a request over the platform's cap is refused naming it
    big = np.ones(n * 4, np.float32)
    status, _, body = call("POST", "/", {}, protocol.encode_request({"x": big}, signature_name="expand"))
    assert status == 413 and (b"6 MB" in body or b"32 MB" in body or b"MAX_BODY_BYTES" in body)


def test_unsupported_lambda_event(mnist_service: Service) -> None:
    from tfserverless.platforms import aws_lambda

    reply = aws_lambda.make_handler(mnist_service)({"Records": []}, None)
    assert reply["statusCode"] == 400 and "unsupported Lambda event" in reply["body"]


def test_fc_event_not_json(mnist_service: Service) -> None:
    from tfserverless.platforms import fc

    reply = fc.make_handler(mnist_service)(b"not json", object())
    assert reply["statusCode"] == 400 and "not JSON" in reply["body"]


def test_lambda_binary_reply_is_base64(mnist_service: Service) -> None:
    from tfserverless.platforms import aws_lambda

    from .conftest import fixture

    ev = fixture("apigw_v2_http.json")
    import base64

    ev["body"] = base64.b64encode(BODY).decode()
    ev["headers"]["authorization"] = TOKEN
    reply: Dict[str, Any] = aws_lambda.make_handler(mnist_service)(ev, None)
    assert reply["isBase64Encoded"] is True
    assert reply["headers"]["Content-Type"] == "application/octet-stream"
    assert "scores" in protocol.decode_response(base64.b64decode(reply["body"]))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_odd_header_bytes_are_401_not_500(platform: str, mnist_service: Service) -> None:
    """Non-ASCII Content-MD5, and (JSON events can carry them) lone surrogates, in signed
    requests: a client's mistake, so a 401 with one line."""
    call = caller_for(platform, mnist_service)
    for md5 in ("\u00e9\u00e9", "\ud800"):
        if platform == "fc2_wsgi" and md5 == "\ud800":
            continue  # WSGI environs are latin-1 strings: no surrogates
        headers = {"Authorization": "EAS abc", "Content-MD5": md5, "Date": "\u00ff"}
        status, _, reply = call("POST", GATEWAY, headers, BODY)
        assert status == 401 and reply.count(b"\n") == 1, (md5, status, reply)
