"""Warm-up through the serving path, fast lane: how the adapters wait for the load and how
long their replays may take (a fake model; the server-side replays are in test_warmup)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List

import pytest

from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.messages import Request, Response
from tfserverless.platforms import load_in_init
from tfserverless.platforms.asgi import warm_path
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
    t0 = time.monotonic()
    load_in_init(svc, "test init")
    assert time.monotonic() - t0 < 0.45
    assert 1 <= len(sent) < 16
