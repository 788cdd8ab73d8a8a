"""Adaptive batching, fast lane: the Batcher with real threads and a numpy 'model'."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from tfserverless.batching.policy import Policy, batch_key
from tfserverless.batching.threaded import Batcher
from tfserverless.errors import BadRequest, RequestTimeout
from tfserverless.protocol import Signature, TensorSpec

SIG = Signature("s", {"x": TensorSpec("x", 1, (-1, -1))}, {"y": TensorSpec("y", 1, (-1, -1))})


class Model:
    """y = 2x per row, ``seconds`` a call; records each call's rows; a negative value fails
    the whole call (as a TF assertion would); ``flat`` sums everything (no batch dim)."""

    def __init__(self, seconds: float = 0.05, flat: bool = False) -> None:
        self.seconds = seconds
        self.flat = flat
        self.calls: List[int] = []
        self.lock = threading.Lock()

    def run(self, sig: Signature, feeds: Dict[str, np.ndarray],
            outputs: Sequence[str]) -> Dict[str, np.ndarray]:
        x = feeds["x"]
        with self.lock:
            self.calls.append(int(x.shape[0]))
        time.sleep(self.seconds)
        if (x < 0).any():
            raise BadRequest("the model rejected the input: x must be >= 0")
        return {"y": np.array(x.sum()) if self.flat else x * 2}


def batcher(**kw: Any) -> Batcher:
    kw.setdefault("max_batch_size", 16)
    kw.setdefault("max_batch_timeout", 5.0)
    kw.setdefault("max_calls", 1)
    return Batcher(Policy(timeout_error=lambda: RequestTimeout("too late"), **kw))


def burst(b: Batcher, model: Model, xs: List[np.ndarray], *, first_alone: bool = True,
          deadline: float = float("inf")) -> List[Tuple[Optional[np.ndarray], Optional[BaseException]]]:
    """The first request starts (the model is idle), the rest arrive while it runs."""
    out: List[Tuple[Optional[np.ndarray], Optional[BaseException]]] = [(None, None)] * len(xs)

    def one(i: int) -> None:
        try:
            out[i] = (b.run(model.run, SIG, {"x": xs[i]}, ["y"], deadline=deadline)[0]["y"], None)
        except Exception as e:
            out[i] = (None, e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(xs))]
    ts[0].start()
    if first_alone:
        time.sleep(model.seconds / 3)
    for t in ts[1:]:
        t.start()
    for t in ts:
        t.join(30)
    return out


def rows(n: int, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).rand(n, k).astype(np.float32)


def test_idle_model_runs_at_once_alone() -> None:
    b, m = batcher(max_batch_timeout=10.0), Model(0.0)
    t0 = time.monotonic()
    (out, waited) = b.run(m.run, SIG, {"x": rows(2)}, ["y"])
    assert time.monotonic() - t0 < 1.0 and waited < 0.01  # no timeout paid at low load
    assert m.calls == [2] and np.array_equal(out["y"], rows(2) * 2)


def test_arrivals_gather_while_a_call_runs_and_split_back_by_rows() -> None:
    b, m = batcher(), Model(0.1)
    xs = [rows(1 + i % 3, seed=i) for i in range(7)]
    out = burst(b, m, xs)
    assert m.calls == [1, sum(x.shape[0] for x in xs[1:])]
    for x, (y, err) in zip(xs, out):
        assert err is None and np.array_equal(y, x * 2)


def test_max_batch_size_counts_rows_and_a_big_request_goes_alone() -> None:
    b, m = batcher(max_batch_size=4), Model(0.1)
    xs = [rows(1)] + [rows(2, seed=i) for i in range(1, 5)] + [rows(9)]
    out = burst(b, m, xs)
    assert all(err is None for _, err in out)
    assert sorted(m.calls[1:]) == [4, 4, 9] and m.calls[0] == 1
    assert all(np.array_equal(y, x * 2) for x, (y, _) in zip(xs, out))


def test_different_shapes_and_dtypes_go_in_different_calls() -> None:
    b, m = batcher(), Model(0.1)
    xs = [rows(1), rows(1, 3), rows(1, 4), rows(2, 3), rows(1, 3).astype(np.float64)]
    out = burst(b, m, xs)
    assert all(err is None for _, err in out)
    assert sorted(m.calls) == [1, 1, 1, 3]  # (3 cols f32: 1+2), (4 cols), (f64), the first


def test_timeout_starts_a_second_call_when_calls_may_overlap() -> None:
    b, m = batcher(max_calls=2, max_batch_timeout=0.05), Model(0.5)
    t0 = time.monotonic()
    out = burst(b, m, [rows(1), rows(1, seed=1)], first_alone=True)
    took = time.monotonic() - t0
    assert all(err is None for _, err in out) and m.calls == [1, 1]
    assert took < 0.9  # the second did not wait for the first call to end


def test_a_failing_request_never_fails_its_neighbours() -> None:
    b, m = batcher(), Model(0.1)
    bad = -rows(1)
    xs = [rows(1), rows(1, seed=1), bad, rows(2, seed=2)]
    out = burst(b, m, xs)
    assert isinstance(out[2][1], BadRequest)
    for i in (0, 1, 3):
        assert out[i][1] is None and np.array_equal(out[i][0], xs[i] * 2)
    assert m.calls[:2] == [1, 4] and sorted(m.calls[2:]) == [1, 1, 2]  # batch, then each alone


def test_outputs_without_the_batch_dim_run_alone_and_are_remembered(caplog: Any) -> None:
    b, m = batcher(), Model(0.1, flat=True)
    xs = [rows(1), rows(2, seed=1), rows(1, seed=2)]
    out = burst(b, m, xs)
    for x, (y, err) in zip(xs, out):
        assert err is None and np.allclose(y, x.sum())
    assert ("s", ("y",)) in b.policy.unbatchable
    assert sum("do not keep the batch dimension" in r.message for r in caplog.records) == 1
    m.calls.clear()
    burst(b, m, xs)
    assert sorted(m.calls) == [1, 1, 2]  # never batched again


def test_deadline_passed_while_gathering_is_dropped_before_the_call() -> None:
    b, m = batcher(), Model(0.3)
    deadline = time.monotonic() + 0.1
    out = burst(b, m, [rows(1), rows(1, seed=1), rows(1, seed=2)], deadline=deadline)
    assert out[0][1] is None  # started before its deadline: answered
    assert all(isinstance(err, RequestTimeout) for _, err in out[1:])
    assert m.calls == [1]


@pytest.mark.parametrize("feeds", [{"x": np.float32(1)}, {"x": rows(2), "z": rows(3)},
                                   {"x": np.zeros((0, 3), np.float32)}])
def test_unbatchable_inputs_have_no_key(feeds: Dict[str, np.ndarray]) -> None:
    assert batch_key(SIG, feeds, ["y"]) is None
