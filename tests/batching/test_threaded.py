"""Adaptive batching, fast lane: the Batcher with real threads and a numpy 'model'."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from tfserverless.batching.policy import Policy, batch_key
from tfserverless.batching.threaded import Batcher
from tfserverless.errors import BadRequest, RequestTimeout
from tfserverless.protocol import Signature, TensorSpec

from ..waiting import Clock, until

SIG = Signature("s", {"x": TensorSpec("x", 1, (-1, -1))}, {"y": TensorSpec("y", 1, (-1, -1))})


class Model:
    """y = 2x per row; records each call's rows; a negative value fails the whole call (as a
    TF assertion would); ``flat`` sums everything (no batch dim).  A call blocks while the
    ``gate`` is closed (open by default): a test holds a call running while requests arrive,
    instead of hoping a sleep is long enough."""

    def __init__(self, flat: bool = False) -> None:
        self.flat = flat
        self.calls: List[int] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def run(self, sig: Signature, feeds: Dict[str, np.ndarray],
            outputs: Sequence[str]) -> Dict[str, np.ndarray]:
        x = feeds["x"]
        with self.lock:
            self.calls.append(int(x.shape[0]))
        assert self.gate.wait(30), "the test never opened the gate"
        if (x < 0).any():
            raise BadRequest("the model rejected the input: x must be >= 0")
        return {"y": np.array(x.sum()) if self.flat else x * 2}






def batcher(**kw: Any) -> Batcher:
    kw.setdefault("max_batch_size", 16)
    kw.setdefault("max_batch_timeout", 5.0)
    kw.setdefault("max_calls", 1)
    return Batcher(Policy(timeout_error=lambda: RequestTimeout("too late"), **kw))


Result = Tuple[Optional[np.ndarray], Optional[BaseException]]


def burst(b: Batcher, model: Model, xs: List[np.ndarray], *, gathered: Optional[int] = None,
          deadline: float = float("inf"), meanwhile: Callable[[], None] = lambda: None,
          sig: Signature = SIG) -> List[Result]:
    """The first request starts a call (the model is idle) and is held in it; the rest arrive
    while it runs and ``gathered`` of them (all, by default) wait for a batch; ``meanwhile()``
    runs then, and the held call ends."""
    out: List[Result] = [(None, None)] * len(xs)

    def one(i: int) -> None:
        try:
            out[i] = (b.run(model.run, sig, {"x": xs[i]}, ["y"], deadline=deadline)[0]["y"], None)
        except Exception as e:
            out[i] = (None, e)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(xs))]
    model.gate.clear()
    ts[0].start()
    until(lambda: len(model.calls) == 1, "the first call started")
    for t in ts[1:]:
        t.start()
    want = len(xs) - 1 if gathered is None else gathered
    until(lambda: b.waiting == want, f"{want} waiting for a batch")
    meanwhile()
    model.gate.set()
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts)
    return out


def rows(n: int, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).rand(n, k).astype(np.float32)


def test_idle_model_runs_at_once_alone() -> None:
    clock = Clock()  # it never moves: a request that waited for a batch would wait for ever
    b, m = Batcher(Policy(max_batch_size=16, max_batch_timeout=10.0, max_calls=1,
                          timeout_error=lambda: RequestTimeout("too late"), clock=clock)), Model()
    got: List[Any] = []
    t = threading.Thread(target=lambda: got.append(b.run(m.run, SIG, {"x": rows(2)}, ["y"])),
                         daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "an idle model's request waited for a batch"
    [(out, waited)] = got
    assert waited == 0.0 and b.calls == 0 and b.waiting == 0  # no timeout paid at low load
    assert m.calls == [2] and np.array_equal(out["y"], rows(2) * 2)


def test_arrivals_gather_while_a_call_runs_and_split_back_by_rows() -> None:
    b, m = batcher(), Model()
    xs = [rows(1 + i % 3, seed=i) for i in range(7)]
    out = burst(b, m, xs)
    assert m.calls == [1, sum(x.shape[0] for x in xs[1:])]
    for x, (y, err) in zip(xs, out):
        assert err is None and np.array_equal(y, x * 2)


def test_max_batch_size_counts_rows_and_a_big_request_goes_alone() -> None:
    b, m = batcher(max_batch_size=4), Model()
    xs = [rows(1)] + [rows(2, seed=i) for i in range(1, 5)] + [rows(9)]
    out = burst(b, m, xs)
    assert all(err is None for _, err in out)
    assert sorted(m.calls[1:]) == [4, 4, 9] and m.calls[0] == 1
    assert all(np.array_equal(y, x * 2) for x, (y, _) in zip(xs, out))


def test_different_shapes_and_dtypes_go_in_different_calls() -> None:
    b, m = batcher(), Model()
    xs = [rows(1), rows(1, 3), rows(1, 4), rows(2, 3), rows(1, 3).astype(np.float64)]
    out = burst(b, m, xs)
    assert all(err is None for _, err in out)
    assert sorted(m.calls) == [1, 1, 1, 3]  # (3 cols f32: 1+2), (4 cols), (f64), the first


def test_shapes_the_signature_did_not_declare_run_alone() -> None:
    """As TF Serving, a shape other than the declared one reaches the model; but its first
    dimension may not be the batch's, so it is never stacked with other requests' rows (nor
    with another of its kind: [3] and [3] are not [6] to a graph that reads [-1, 1])."""
    declared = Signature("d", {"x": TensorSpec("x", 1, (-1, 3))}, {"y": TensorSpec("y", 1, (-1, 3))})
    b, m = batcher(), Model()
    odd = [np.ones(3, np.float32), np.ones(3, np.float32) * 2, np.ones((1, 4), np.float32),
           np.ones((1, 1, 3), np.float32)]
    fit = [rows(1), rows(2, seed=1), rows(1, seed=2)]
    xs = fit[:1] + odd + fit[1:]
    out = burst(b, m, xs, gathered=len(fit) - 1, sig=declared)
    assert all(err is None for _, err in out)
    assert all(np.array_equal(y, x * 2) for x, (y, _) in zip(xs, out))
    assert m.calls[0] == 1 and m.calls[-1] == 3  # the first alone, then the fitting two together
    assert sorted(m.calls[1:-1]) == [1, 1, 3, 3]  # each odd one alone, beside them


def test_timeout_starts_a_second_call_when_calls_may_overlap() -> None:
    clock = Clock()
    b, m = batcher(max_calls=2, max_batch_timeout=0.05, clock=clock), Model()

    def meanwhile() -> None:
        assert m.calls == [1]  # the second waits for its batch timeout, not for the first call
        clock.now += 0.06  # its batch timeout passed
        # the first call is still held: the second did not wait for it to end
        until(lambda: m.calls == [1, 1], "a second call beside the first")

    out = burst(b, m, [rows(1), rows(1, seed=1)], meanwhile=meanwhile)
    assert all(err is None for _, err in out) and m.calls == [1, 1]


def test_a_failing_request_never_fails_its_neighbours() -> None:
    b, m = batcher(), Model()
    bad = -rows(1)
    xs = [rows(1), rows(1, seed=1), bad, rows(2, seed=2)]
    out = burst(b, m, xs)
    assert isinstance(out[2][1], BadRequest)
    for i in (0, 1, 3):
        assert out[i][1] is None and np.array_equal(out[i][0], xs[i] * 2)
    assert m.calls[:2] == [1, 4] and sorted(m.calls[2:]) == [1, 1, 2]  # batch, then each alone


def test_outputs_without_the_batch_dim_run_alone_and_are_remembered(caplog: Any) -> None:
    b, m = batcher(), Model(flat=True)
    xs = [rows(1), rows(2, seed=1), rows(1, seed=2)]
    out = burst(b, m, xs)
    for x, (y, err) in zip(xs, out):
        assert err is None and np.allclose(y, x.sum())
    assert ("s", ("y",)) in b.policy.unbatchable
    assert sum("do not keep the batch dimension" in r.message for r in caplog.records) == 1
    m.calls.clear()
    out = burst(b, m, xs, gathered=0, meanwhile=lambda: until(
        lambda: len(m.calls) == 3, "all three in calls of their own"))  # none waits for a batch
    assert sorted(m.calls) == [1, 1, 2] and all(err is None for _, err in out)  # never batched again


@pytest.mark.parametrize("seconds_left", [0.01, 30.0], ids=["waiter-wakes", "call-ends"])
def test_deadline_passed_while_gathering_is_dropped_before_the_call(seconds_left: float) -> None:
    """Whoever notices first, the waiter (its wait times out: it had 0.01 s left) or the end
    of the running call (it had 30 s: still asleep), a request whose deadline passed while it
    waited for a batch never reaches the model."""
    clock = Clock()
    b, m = batcher(clock=clock), Model()

    def meanwhile() -> None:
        clock.now += 31  # the deadline passes while the first call still runs
        if seconds_left < 1:
            until(lambda: b.waiting == 0, "the late ones dropped")
            assert m.calls == [1]

    out = burst(b, m, [rows(1), rows(1, seed=1), rows(1, seed=2)],
                deadline=clock.now + seconds_left, meanwhile=meanwhile)
    assert out[0][1] is None  # started before its deadline: answered
    assert all(isinstance(err, RequestTimeout) for _, err in out[1:])
    assert m.calls == [1]


@pytest.mark.parametrize("feeds", [{"x": np.float32(1)}, {"x": rows(2), "z": rows(3)},
                                   {"x": np.zeros((0, 3), np.float32)}, {"x": np.ones(3)},
                                   {"x": np.ones((1, 1, 3))}, {"z": rows(2)}])
def test_unbatchable_inputs_have_no_key(feeds: Dict[str, np.ndarray]) -> None:
    """A scalar, unequal rows, no rows, a rank the signature did not declare ([-1, -1]), a
    name it does not have."""
    assert batch_key(SIG, feeds, ["y"]) is None


def test_batch_key_reads_the_declared_shape_but_the_batch_dimension() -> None:
    fixed = Signature("f", {"x": TensorSpec("x", 1, (2, 3))}, {"y": TensorSpec("y", 1, (2, 3))})
    anyrank = Signature("a", {"x": TensorSpec("x", 1, None)}, {"y": TensorSpec("y", 1, None)})
    assert batch_key(fixed, {"x": rows(2)}, ["y"]) is not None
    assert batch_key(fixed, {"x": rows(5)}, ["y"]) is not None  # the first dim is the batch's
    assert batch_key(fixed, {"x": rows(2, 4)}, ["y"]) is None
    assert batch_key(anyrank, {"x": np.ones((4, 1, 2))}, ["y"]) is not None
