"""Errors that echo what a client sent (a path, a method, a model name) stay short whatever it
sent: a 64 KiB path fits in a head, and was repeated whole in the 404 or 405 (fast lane: the
routes answer before any model is needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.messages import Request
from tfserverless.protocol.text import PATH_LIMIT, clip
from tfserverless.serving.service import Service

LONG = "x" * (64 << 10)


def service() -> Service:
    return Service(Config.from_environ({"MODEL_PATH": "/m", "SERVICE_NAME": "mnist"}),
                   ModelHolder(lambda: object()))  # type: ignore[arg-type,return-value]


def message(body: bytes) -> str:
    text = body.decode()
    return str(json.loads(text)["error"]) if text.startswith("{") else text


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/" + LONG, 404),  # no route
    ("POST", "/api/other/" + LONG, 404),  # EAS: another path under its gateway
    ("POST", "/api/predict/" + LONG, 404),  # EAS: another service's name
    ("POST", "/v1/models/mnist/labels/" + LONG + ":predict", 404),  # TF Serving: a version label
    ("POST", "/v1/" + LONG, 404),  # TF Serving REST
    ("POST", "/v2/" + LONG, 404),  # V2
    ("POST", "/endpoints/" + LONG, 404),  # SageMaker Runtime's path
    ("GET", "/v2/models/" + LONG + "/ready", 404),  # V2: another model's name
    ("GET", "/v1/models/" + LONG, 404),  # TF Serving: another model's name
    ("DELETE", "/api/predict/mnist", 405),
    ("X" * 4096, "/v2/health/ready", 405),  # a method as long as a head may carry
    ("DELETE", "/v2/health/" + "ready", 405),
    ("PUT", "/invocations", 405),
])
def test_an_echoed_path_method_or_name_is_cut(method: str, path: str, status: int) -> None:
    resp: Any = service().handle(Request(method, path, {}, b""))
    said = message(resp.body).strip()
    assert resp.status == status, said[:300]
    assert "\n" not in said and len(said) < PATH_LIMIT * 2 + 400, len(said)


def test_clip_keeps_short_text_and_cuts_long() -> None:
    assert clip("/v1/models/mnist") == "/v1/models/mnist"
    assert clip("a" * 500) == "a" * PATH_LIMIT + "..."
