"""Warm-up through the serving path, fast lane: how the adapters wait for the load and how
long their replays may take (a fake model; the server-side replays are in test_warmup)."""

from __future__ import annotations

import time
from typing import Any, List

from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.messages import Request, Response
from tfserverless.platforms import load_in_init
from tfserverless.serving.service import Service


def service(load: Any, **env: str) -> Service:
    return Service(Config.from_environ(dict({"MODEL_PATH": "/m"}, **env)),
                   ModelHolder(load))


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
