"""Warm-up through the serving path, fast lane: which requests an adapter replays, that they
are marked only by the adapter (never by a client), not counted, and readiness meanwhile."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any, Dict, List

from tfserverless.backends.holder import ModelHolder
from tfserverless.config import Config
from tfserverless.messages import Request
from tfserverless.platforms.asgi import WARMUP, request_head
from tfserverless.protocol.base import Call
from tfserverless.serving import warmup
from tfserverless.serving.predictor import Context
from tfserverless.serving.service import PATH_WARMUP_REQUESTS, Service

NO_CALL = Call()


def service(**env: str) -> Service:
    svc = Service(Config.from_environ(dict({"MODEL_PATH": "/m"}, **env)),
                  ModelHolder(lambda: object()))  # type: ignore[arg-type,return-value]
    svc.warmup_bodies = [b"one", b"two"]
    return svc


def test_warm_up_requests_carry_the_token_and_are_marked() -> None:
    reqs = service(SERVICE_TOKEN="s3cret").warmup_requests()
    assert [(r.method, r.path, r.body, r.warmup) for r in reqs] == [
        ("POST", "/", b"one", True), ("POST", "/", b"two", True)]
    assert reqs[0].headers["authorization"] == "s3cret" and reqs[0].content_length == 3
    assert "authorization" not in service().warmup_requests()[0].headers
    assert len(service().warmup_requests(limit=1)) == 1


def scope(**extra: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                            "headers": [(b"x-tfserverless-warmup", b"1")]}
    base.update(extra)
    return base


def test_only_the_adapters_replay_is_a_warm_up() -> None:
    assert not request_head(scope()).warmup  # a client's header marks nothing
    assert not request_head(scope(extensions={"http.response.trailers": {}})).warmup
    assert request_head(scope(extensions={WARMUP: {}})).warmup


def test_warm_up_requests_are_not_counted() -> None:
    svc = service()
    counted: List[str] = []
    svc.metrics.request = lambda protocol, status, seconds, infer=False: counted.append(protocol)  # type: ignore[method-assign]
    svc.count(svc.warmup_requests()[0], 200, 0.0)
    assert counted == []
    client = request_head(scope())
    client.protocol = "eas"
    svc.count(client, 200, 0.0)
    assert counted == ["eas"]


def test_health_is_503_while_the_path_warms_up() -> None:
    svc = service()
    svc.holder.hold()
    assert svc.holder.wait(5)
    assert svc.health(detailed=False).status == 503
    svc.holder.release()
    assert svc.health(detailed=False).status == 200


def replayed(env: Dict[str, str], bodies: List[bytes]) -> List[bytes]:
    cfg = Config.from_environ(dict({"MODEL_PATH": "/m", "WARM_UP_DATA_PATH": "w.txt",
                                    "WARM_UP_COUNT": "1"}, **env))
    data = b"\n".join(base64.b64encode(b) for b in bodies)
    return warmup.replay(cfg, SimpleNamespace(path="/m"), lambda model, body: None,
                         lambda path, config: data, {}, keep=PATH_WARMUP_REQUESTS)


def test_only_the_bodies_the_path_replays_are_kept() -> None:
    # every other one stayed in each worker's memory for its life (all 1000 of them)
    bodies = [b"request %d" % i for i in range(1000)]
    assert replayed({}, bodies) == bodies[:PATH_WARMUP_REQUESTS]
    assert len(service().warmup_requests()) <= PATH_WARMUP_REQUESTS


def test_kept_bodies_are_bounded_by_max_body_bytes() -> None:
    # a body over MAX_BODY_BYTES could only be refused (413) by the path; and all the kept
    # ones together take no more than one request may
    big, small = b"x" * 3000, b"y" * 600
    assert replayed({"MAX_BODY_BYTES": "2k"}, [big, small, small, small, small]) == [small] * 3


def test_warm_up_replays_are_not_in_the_queue_histogram() -> None:
    # /metrics does not count them: neither as requests nor as predictions that queued
    svc = service()
    queued: List[float] = []
    svc.metrics.queued = queued.append  # type: ignore[method-assign]
    codec = SimpleNamespace(
        decode=lambda body, headers, model, call: SimpleNamespace(sig=None, feeds={}, outputs=[]),
        encode=lambda outputs, d, call: (b"{}", {}))
    model = SimpleNamespace(run=lambda sig, feeds, outputs: {})
    for req in svc.warmup_requests():
        assert svc.predictor.predict(req, model, Context(), codec, NO_CALL).status == 200  # type: ignore[arg-type]
    assert queued == []
    client = Request("POST", "/", {}, b"one")
    svc.predictor.predict(client, model, Context(), codec, NO_CALL)  # type: ignore[arg-type]
    assert len(queued) == 1
