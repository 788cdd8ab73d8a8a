"""Fast lane: every adapter's whole reply (status, headers, body) for routing, auth, limits,
health and all three protocols, against golden replies in ``tests/data/golden/``.

The model is an in-memory ``Servable`` (y = 2x), so this runs in a second with no TensorFlow;
the real-model and real-server tests (``test_adapters``) check the same paths for real.
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
from .conftest import PLATFORMS, SERVICE, TOKEN, caller_for

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


def comparable(reply: Tuple[int, Dict[str, str], bytes]) -> Dict[str, Any]:
    status, headers, body = reply
    h = {k.lower(): v for k, v in headers.items() if k.lower() not in ("date", "content-length")}
    try:
        text: Any = body.decode("utf-8")
    except UnicodeDecodeError:
        text = {"base64": base64.b64encode(body).decode()}
    if h.get("content-type") == "application/json" and '"pid"' in text:
        data = json.loads(text)
        data["pid"] = 0  # the one thing that differs per process
        text = json.dumps(data, sort_keys=True)
    return {"status": status, "headers": dict(sorted(h.items())), "body": text}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_replies_match_the_golden_files(platform: str, service: Service) -> None:
    call = caller_for(platform, service)
    got = {name: comparable(call(method, path, headers, body))
           for name, method, path, headers, body in CASES}
    path = os.path.join(GOLDEN, f"{platform}.json")
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path, encoding="utf-8") as f:
        want = json.load(f)
    for name in got:
        assert got[name] == want.get(name), name


def test_every_platform_answers_alike(service: Service) -> None:
    """Bodies and statuses agree across platforms (headers differ only in what each allows)."""
    replies = {}
    for platform in PLATFORMS:
        with open(os.path.join(GOLDEN, f"{platform}.json"), encoding="utf-8") as f:
            replies[platform] = {k: (v["status"], v["body"]) for k, v in json.load(f).items()}
    first = replies[PLATFORMS[0]]
    for platform, r in replies.items():
        assert r == first, platform
