"""Fast lane: every adapter's whole reply (status, headers, body) for routing, auth, limits,
health and all three protocols, against golden replies in ``tests/data/golden/``.

The model is an in-memory ``Servable`` (y = 2x), so this runs in a second with no TensorFlow;
the real-model and real-server tests (``test_adapters``) check the same paths for real.
The ASGI app (``make_app``: ``tfserverless serve``, Cloud Run) is called in-process the same
way, with a scope, ``receive`` and ``send``, for the same cases and what only an HTTP server
sees (HEAD, a 431, a body in several messages, a client that leaves): ``asgi.json``.
``UPDATE_GOLDEN=1 pytest tests/platforms/test_golden.py`` rewrites the files after a
deliberate change; review the diff.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import pytest

from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.protocol import Signature, TensorSpec, encode_request
from tfserverless.serving.service import Service

from ..conftest import DATA
from .conftest import PLATFORMS, SERVICE, TOKEN, asgi_caller, caller_for

GOLDEN = os.path.join(DATA, "golden")
X = np.arange(6, dtype=np.float32).reshape(2, 3) / 4


class Doubler:
    """A ``Servable`` held in memory: one signature, y = 2x."""

    path = "/models/doubler/3"
    tf_version = "none"
    runtime = "none"
    import_seconds = load_seconds = 0.0
    default_signature = "serving_default"

    def __init__(self) -> None:
        spec = TensorSpec("x", 1, (-1, 3), "x:0")
        self.signatures = {"serving_default": Signature(
            "serving_default", {"x": spec}, {"y": TensorSpec("y", 1, (-1, 3), "y:0")},
            "tensorflow/serving/predict")}

    def signature(self, name: str) -> Signature:
        from tfserverless.errors import BadRequest

        if (name or self.default_signature) not in self.signatures:
            raise BadRequest(f"unknown signature_name {name!r}; expected 'serving_default'")
        return self.signatures[name or self.default_signature]

    def run(self, sig: Signature, feeds: Dict[str, Any], outputs: Sequence[str]) -> Dict[str, Any]:
        return {"y": feeds["x"] * 2}

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    cfg = Config.from_environ({"MODEL_PATH": "/models/doubler", "SERVICE_TOKEN": TOKEN,
                               "SERVICE_NAME": SERVICE, "LOG_LEVEL": "WARNING",
                               "SERVER_TIMING": "false", "MAX_BODY_BYTES": "4KiB"})
    svc = Service(cfg, ModelHolder(Doubler))
    svc.holder.load_now()
    yield svc


RAW = {"Authorization": TOKEN}
EAS = encode_request({"x": X})
V2_HEAD = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                  "parameters": {"binary_data_size": X.nbytes}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
CASES: List[Tuple[str, str, str, Dict[str, str], bytes]] = [
    ("eas schema", "GET", "/api/predict/" + SERVICE, RAW, b""),
    ("eas predict", "POST", "/api/predict/" + SERVICE, RAW, EAS),
    ("eas predict on /", "POST", "/", RAW, EAS),
    ("eas predict gzip", "POST", "/", dict(RAW, **{"Content-Encoding": "gzip"}), gzip.compress(EAS)),
    ("eas unknown coding", "POST", "/", dict(RAW, **{"Content-Encoding": "br"}), EAS),
    ("eas no token", "POST", "/", {}, EAS),
    ("eas other service", "POST", "/api/predict/other", RAW, EAS),
    ("eas malformed", "POST", "/", RAW, b"\xff\xff"),
    ("eas json body", "POST", "/", RAW, b'{"x": 1}'),
    ("too large", "POST", "/", RAW, b"\x00" * 5000),
    ("wrong method", "DELETE", "/", RAW, b""),
    ("no route", "GET", "/nowhere", {}, b""),
    ("liveness", "GET", "/healthz/live", {}, b""),
    ("readiness", "GET", "/healthz", RAW, b""),
    ("readiness without the token", "GET", "/healthz", {}, b""),
    ("tfs predict rows", "POST", "/v1/models/mnist:predict", RAW,
     json.dumps({"instances": X.tolist()}).encode()),
    ("tfs predict columns", "POST", "/v1/models/mnist/versions/3:predict", RAW,
     json.dumps({"inputs": {"x": X.tolist()}}).encode()),
    ("tfs status", "GET", "/v1/models/mnist", RAW, b""),
    ("tfs metadata", "GET", "/v1/models/mnist/metadata", RAW, b""),
    ("tfs wrong version", "POST", "/v1/models/mnist/versions/9:predict", RAW, b'{"inputs": []}'),
    ("tfs classify a predict signature", "POST", "/v1/models/mnist:classify", RAW,
     b'{"examples": [{"x": 1}]}'),
    ("tfs bad json", "POST", "/v1/models/mnist:predict", RAW, b"{"),
    ("v2 server", "GET", "/v2", {}, b""),
    ("v2 live", "GET", "/v2/health/live", {}, b""),
    ("v2 ready", "GET", "/v2/health/ready", {}, b""),
    ("v2 model", "GET", "/v2/models/mnist/versions/3", RAW, b""),
    ("v2 infer json", "POST", "/v2/models/mnist/infer", RAW, json.dumps({"id": "7", "inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X.reshape(-1).tolist()}]}).encode()),
    ("v2 infer binary", "POST", "/v2/models/mnist/infer",
     dict(RAW, **{"Inference-Header-Content-Length": str(len(V2_HEAD))}), V2_HEAD + X.tobytes()),
    ("v2 no token", "POST", "/v2/models/mnist/infer", {}, b"{}"),
    ("v2 bad input", "POST", "/v2/models/mnist/infer", RAW, b'{"inputs": [{"name": "x"}]}'),
]
NAMES = {c[0] for c in CASES}


def comparable(reply: Tuple[int, Dict[str, str], bytes], *, length: bool = False) -> Dict[str, Any]:
    """What a golden file holds of a reply; ``length``: keep ``content-length`` (an ASGI
    app's own header; a platform's is its runtime's), unless a pid in the body sets it."""
    status, headers, body = reply
    h = {k.lower(): v for k, v in headers.items()
         if k.lower() not in ("date", "content-length") or (length and k.lower() != "date")}
    try:
        text: Any = body.decode("utf-8")
    except UnicodeDecodeError:
        text = {"base64": base64.b64encode(body).decode()}
    if h.get("content-type") == "application/json" and '"pid"' in text:
        data = json.loads(text)
        data["pid"] = 0  # the one thing that differs per process
        text = json.dumps(data, sort_keys=True)
        h.pop("content-length", None)  # it counts the pid's digits
    return {"status": status, "headers": dict(sorted(h.items())), "body": text}


def check_golden(name: str, got: Dict[str, Dict[str, Any]]) -> None:
    """``got`` against ``tests/data/golden/<name>.json``, rewritten first when UPDATE_GOLDEN
    is set."""
    path = os.path.join(GOLDEN, f"{name}.json")
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path, encoding="utf-8") as f:
        want = json.load(f)
    assert sorted(got) == sorted(want), "cases added or gone: UPDATE_GOLDEN=1 and review"
    for case in got:
        assert got[case] == want.get(case), case


@pytest.mark.parametrize("platform", PLATFORMS)
def test_replies_match_the_golden_files(platform: str, service: Service) -> None:
    call = caller_for(platform, service)
    check_golden(platform, {name: comparable(call(method, path, headers, body))
                            for name, method, path, headers, body in CASES})


#: what only an HTTP server sees: HEAD, a head too large, a body in several messages, a
#: declared length over the limit, a body without one, a client that leaves
BIG_HEAD = {"X-Big": "a" * (65 << 10)}
ASGI_CASES: List[Tuple[str, str, str, Dict[str, str], Any, int]] = [
    ("head readiness without the token", "HEAD", "/healthz", {}, b"", 0),
    ("head tfs status", "HEAD", "/v1/models/mnist", RAW, b"", 0),
    ("head eas schema", "HEAD", "/api/predict/" + SERVICE, RAW, b"", 0),
    ("headers over 64 KiB", "POST", "/", dict(RAW, **BIG_HEAD), EAS, 0),
    ("eas predict in 7-byte messages", "POST", "/", RAW, EAS, 7),
    ("v2 infer binary in 16-byte messages", "POST", "/v2/models/mnist/infer",
     dict(RAW, **{"Inference-Header-Content-Length": str(len(V2_HEAD))}), V2_HEAD + X.tobytes(), 16),
    ("declared length over MAX_BODY_BYTES", "POST", "/", dict(RAW, **{"Content-Length": "8388608"}),
     EAS, 0),
    ("undeclared body over MAX_BODY_BYTES", "POST", "/", RAW, b"\x00" * 5000, 1024),
    ("no token, body never read", "POST", "/", {"Content-Length": "8388608"}, b"", 0),
    ("client left while sending the body", "POST", "/", RAW, None, 0),
]


def test_asgi_replies_match_the_golden_file(service: Service) -> None:
    """``make_app`` in-process: every case the platforms answer, and what only a server sees."""
    plain = asgi_caller(service)
    got = {name: comparable(plain(method, path, headers, body), length=True)
           for name, method, path, headers, body in CASES}
    for name, method, path, headers, body, chunk in ASGI_CASES:
        call = asgi_caller(service, chunk=chunk) if chunk else plain
        got[name] = comparable(call(method, path, headers, body), length=True)
    check_golden("asgi", got)


def test_every_platform_answers_alike(service: Service) -> None:
    """Bodies and statuses agree across platforms and the ASGI app (headers differ only in
    what each allows)."""
    replies = {}
    for platform in [*PLATFORMS, "asgi"]:
        with open(os.path.join(GOLDEN, f"{platform}.json"), encoding="utf-8") as f:
            replies[platform] = {k: (v["status"], v["body"]) for k, v in json.load(f).items()
                                 if k in NAMES}
    first = replies[PLATFORMS[0]]
    for platform, r in replies.items():
        assert r == first, platform
