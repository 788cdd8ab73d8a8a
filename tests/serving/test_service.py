"""``Service`` in-process with a real model: where an async server runs ``handle``."""

from __future__ import annotations

from typing import Dict

import numpy as np

from tfserverless import protocol
from tfserverless.config import Config
from tfserverless.messages import Request
from tfserverless.serving import predictor
from tfserverless.serving.app import create_service


def test_runs_inline_only_once_loaded_and_while_predicts_are_cheap(models: Dict[str, str]) -> None:
    svc = create_service({}, config=Config.from_environ(
        {"MODEL_PATH": models["multi"], "LOG_LEVEL": "WARNING"}))
    a = np.zeros((1, 3), np.float32)
    small = Request("POST", "/", {}, protocol.encode_request({"a": a, "b": a}))
    # before the load nothing is known of a predict's cost: never on the event loop
    assert not svc.predictor.runs_inline(small)
    svc.holder.load_now()
    try:
        assert not svc.predictor.runs_inline(small)  # no predict seen yet: its cost is unknown
        for _ in range(40):  # the first one also builds the session callable
            assert svc.handle(small).status == 200
        assert svc.predictor.runs_inline(small)  # a 1x3 add answers far under INLINE_SECONDS
        # a body 10^5 times larger is expected to cost 10^5 times more: to a thread
        big = Request("POST", "/", {}, b"\0" * (len(small.body) * 100_000))
        assert not svc.predictor.runs_inline(big)
        # a model that got slow (or a slow signature): predicts go back to a thread
        est = svc.predictor._predict_seconds
        # a time measured in a thread beside other predictions (GIL waits in it) may only
        # lower the estimate
        svc.predictor._observe(100 * predictor.INLINE_SECONDS, len(small.body), True)
        assert svc.predictor._predict_seconds == est and svc.predictor.runs_inline(small)
        for _ in range(40):
            svc.predictor._observe(10 * predictor.INLINE_SECONDS, len(small.body), False)
        assert not svc.predictor.runs_inline(small)
        svc.predictor._observe(predictor.INLINE_SECONDS / 100, len(small.body), True)
        est = svc.predictor._predict_seconds
        assert est is not None and est < 10 * predictor.INLINE_SECONDS
    finally:
        svc.holder.model.close()

