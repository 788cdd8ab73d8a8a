"""``Service`` in-process with a real model: where an async server runs ``handle``."""

from __future__ import annotations

from typing import Dict

import numpy as np

from tfserverless import protocol
from tfserverless.config import Config
from tfserverless.messages import Request
from tfserverless.serving import predictor
from tfserverless.serving.app import create_service


class Ticks:
    """The predictor's clock, moving ``step`` seconds each time it is read: a predict timed
    with it costs a few steps, whatever this machine's speed or load."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


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
        # predicts that cost 1000 times less than INLINE_SECONDS (in reads of the clock)
        svc.predictor.clock = Ticks(predictor.INLINE_SECONDS / 1000)
        for _ in range(3):
            assert svc.handle(small).status == 200
        assert svc.predictor.runs_inline(small)
        # a body 10^5 times larger is expected to cost 10^5 times more: to a thread
        big = Request("POST", "/", {}, b"\0" * (len(small.body) * 100_000))
        assert not svc.predictor.runs_inline(big)
        # a time measured in a thread beside other predictions (GIL waits in it) may only
        # lower the estimate
        est = svc.predictor._predict_seconds
        svc.predictor._observe(100 * predictor.INLINE_SECONDS, len(small.body), True)
        assert svc.predictor._predict_seconds == est and svc.predictor.runs_inline(small)
        # the model got slow (or this is a slow signature): each predict now costs at least
        # INLINE_SECONDS per read of the clock, and predicts go back to a thread
        svc.predictor.clock = Ticks(predictor.INLINE_SECONDS)
        for _ in range(40):
            assert svc.handle(small).status == 200
        assert not svc.predictor.runs_inline(small)
        est = svc.predictor._predict_seconds
        svc.predictor._observe(predictor.INLINE_SECONDS / 100, len(small.body), True)
        assert est is not None and svc.predictor._predict_seconds < est  # a lower one counts
    finally:
        svc.holder.model.close()
