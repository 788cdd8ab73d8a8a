"""Warm-up through the serving path, fast lane: how the adapters wait for the load and how
long their replays may take (a fake model; the server-side replays are in test_warmup)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar, Dict, List

import numpy as np
import pytest

from tfserverless import protocol
from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.messages import Request, Response
from tfserverless.platforms import load_in_init
from tfserverless.platforms.asgi import make_app, warm_path
from tfserverless.protocol.signature import Signature, TensorSpec
from tfserverless.serving.service import Service


def service(load: Any, **env: str) -> Service:
    return Service(Config.from_environ(dict({"MODEL_PATH": "/m"}, **env)),
                   ModelHolder(load))


async def no_app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("nothing to replay")


@pytest.mark.parametrize("timeout", ["0", "0.001"])
def test_warm_path_waits_for_a_slow_load_without_spinning(timeout: str) -> None:
    # MODEL_LOAD_TIMEOUT is what a request waits (0: a 503 at once), not a polling interval:
    # warm_path polled the load that often on the event loop for as long as it lasted
    gate = threading.Event()
    svc = service(lambda: gate.wait(5) and object(), MODEL_LOAD_TIMEOUT=timeout)
    waits: List[float] = []
    real = svc.holder.wait_async

    async def counted(seconds: float) -> bool:
        waits.append(seconds)
        return await real(seconds)

    svc.holder.wait_async = counted  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.ensure_future(warm_path(svc, no_app))
        await asyncio.sleep(0.5)
        assert not svc.holder.serving
        gate.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert svc.holder.serving
    assert len(waits) <= 3, f"{len(waits)} polls of a 0.5 s load"


def test_load_in_init_keeps_the_path_warm_up_within_the_init_budget(monkeypatch: Any) -> None:
    # Lambda's init phase is capped (10 s): the budget is for the load and all its warm-up
    svc = service(lambda: object(), INIT_LOAD_BUDGET="0.3")
    svc.warmup_bodies = [b"x"] * 16
    sent: List[Request] = []

    def slow(req: Request, *args: Any) -> Response:
        sent.append(req)
        time.sleep(0.1)
        return Response(200)

    monkeypatch.setattr(svc, "handle", slow)
    load_in_init(svc, "test init")
    # each replay takes at least 0.1 s: within 0.3 s at most four can have started
    assert 1 <= len(sent) <= 4


class Fake:
    """A servable whose one signature doubles ``x`` (float32, rows of 3)."""

    path = "/models/m/1"
    default_signature = "serving_default"
    tf_version = ""
    runtime = "fake"
    import_seconds = load_seconds = 0.0
    sig = Signature("serving_default", {"x": TensorSpec("x", 1, (-1, 3), "x:0")},
                    {"y": TensorSpec("y", 1, (-1, 3), "y:0")}, "tensorflow/serving/predict")
    signatures: ClassVar[Dict[str, Signature]] = {"serving_default": sig}

    def signature(self, name: str) -> Signature:
        return self.sig

    def run(self, sig: Signature, feeds: Dict[str, Any], outputs: Any) -> Dict[str, Any]:
        return {"y": feeds["x"] * 2}

    def close(self) -> None:
        pass


def test_path_warm_up_spends_no_rate_limit_and_sheds_nothing() -> None:
    # RPC_RATE_LIMIT is for traffic: 16 warm-up requests x 3 spent the bucket (all but the
    # first 2 were 429s, counted in tfserverless_shed_total), and the first clients after
    # readiness found it empty
    svc = service(Fake, RPC_RATE_LIMIT="2")
    svc.holder.load_now()
    svc.warmup_bodies = [protocol.encode_request({"x": np.ones((1, 3), np.float32)})] * 16

    asyncio.run(warm_path(svc, make_app(svc)))
    assert svc.admission.shed[429] == 0
    body = svc.warmup_bodies[0]
    assert svc.handle(Request("POST", "/", {}, body, content_length=len(body))).status == 200
