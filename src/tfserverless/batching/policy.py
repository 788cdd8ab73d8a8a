"""The batching policy both batchers share, apart from how they wait: which requests may
share a call (``batch_key``), which group goes next (``take_group``, ``ready_group``,
``admit_group``), and ``Policy``: the settings, the clock, the unbatchable set, and how a group
is run (together, split back by rows; alone again when that fails or cannot be split).
``threaded.Batcher`` waits in request threads (sync servers); ``aio.AsyncBatcher`` on the
event loop (ASGI)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import TFServerlessError
from ..protocol.signature import Signature, fits_shape

log = logging.getLogger("tfserverless")

Outputs = Dict[str, np.ndarray]
Run = Callable[[Signature, Dict[str, np.ndarray], Sequence[str]], Outputs]
#: (rows, seconds) of each model call, for metrics
Observe = Callable[[int, float], None]


def batch_key(sig: Signature, feeds: Dict[str, np.ndarray],
              outputs: Sequence[str]) -> Optional[Tuple[Hashable, int]]:
    """``(key, rows)``: requests with equal keys can share a call; None when this one cannot
    (a scalar input, inputs with different first dimensions, or a shape other than the
    signature declared: the model may take it, as TF Serving lets it, but what its first
    dimension means is then unknown, and its rows must not be stacked with others')."""
    rows = -1
    parts: List[Hashable] = [sig.name, tuple(outputs)]
    for name in sorted(feeds):
        a = feeds[name]
        spec = sig.inputs.get(name)
        if a.ndim == 0 or (rows >= 0 and a.shape[0] != rows) or spec is None or \
                not fits_shape(a.shape, spec.shape):
            return None
        rows = a.shape[0]
        parts.append((name, a.dtype.str, a.shape[1:]))
    if rows <= 0:
        return None
    return tuple(parts), rows


def take_group(pending: Deque[Item], max_rows: int) -> Tuple[List[Item], bool]:
    """The oldest request's group (it is taken first, whatever its size) and whether it is
    full."""
    first = pending[0]
    group, rows = [first], first.rows
    for it in list(pending)[1:]:
        if it.key == first.key:
            if rows + it.rows > max_rows:
                return group, True
            group.append(it)
            rows += it.rows
    return group, rows >= max_rows


def ready_group(pending: Deque[Item], max_rows: int, calls: int, max_wait: float,
                now: float) -> Tuple[Optional[List[Item]], float]:
    """The launch policy both batchers share: the oldest group, if it may start now (no call
    runs, it is full, or its oldest waited ``max_wait``), else None and the seconds until it
    may."""
    group, full = take_group(pending, max_rows)
    waited = now - group[0].arrived
    if calls == 0 or full or waited >= max_wait:
        return group, 0.0
    return None, max_wait - waited


def admit_group(pending: Deque[Item], group: List[Item],
                now: float) -> Tuple[List[Item], List[Item]]:
    """Takes ``group`` out of ``pending``: ``(members that run, members past their
    deadline)``, the former marked as members with their wait recorded."""
    live, late = [], []
    for it in group:
        pending.remove(it)
        if now >= it.deadline:
            it.state = "dropped"
            late.append(it)
        else:
            it.state, it.waited = "member", now - it.arrived
            live.append(it)
    return live, late


class Item:
    __slots__ = ("arrived", "deadline", "error", "event", "feeds", "future", "group", "key",
                 "outputs", "result", "rows", "sig", "state", "waited")

    def __init__(self, key: Hashable, rows: int, sig: Signature, feeds: Dict[str, np.ndarray],
                 outputs: Sequence[str], arrived: float, deadline: float) -> None:
        self.key, self.rows, self.sig, self.feeds, self.outputs = key, rows, sig, feeds, outputs
        self.arrived, self.deadline = arrived, deadline
        self.state = "pending"  # -> "lead" (runs .group), "done", "dropped"
        self.group: List[Item] = []
        self.result: Optional[Outputs] = None
        self.error: Optional[BaseException] = None
        self.event: Any = None  # a threading.Event for ``Batcher`` waiters
        self.waited = 0.0
        self.future: Any = None  # the asyncio future an ``AsyncBatcher`` waiter awaits


class Policy:
    """Settings and the call logic: ``max_batch_size`` rows a call, ``max_batch_timeout``
    seconds the oldest request of a group may wait while calls run, ``max_calls`` calls at
    once (``RPC_WORKER_THREADS``); ``timeout_error()`` is what a request past its deadline
    gets; ``clock`` is injectable (tests)."""

    def __init__(self, *, max_batch_size: int = 16, max_batch_timeout: float = 0.05,
                 max_calls: int = 5, timeout_error: Callable[[], TFServerlessError],
                 observe: Optional[Observe] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_timeout = max_batch_timeout
        self.max_calls = max(1, max_calls)
        self.timeout_error = timeout_error
        self.observe = observe
        self.clock = clock
        self.unbatchable: Set[Tuple[str, Tuple[str, ...]]] = set()

    def key(self, sig: Signature, feeds: Dict[str, np.ndarray],
            outputs: Sequence[str]) -> Optional[Tuple[Hashable, int]]:
        """``batch_key``, unless this signature's outputs proved unsplittable."""
        if (sig.name, tuple(outputs)) in self.unbatchable:
            return None
        return batch_key(sig, feeds, outputs)

    def call(self, run: Run, sig: Signature, feeds: Dict[str, np.ndarray], outputs: Sequence[str],
             rows: int) -> Outputs:
        t0 = time.perf_counter()
        out = run(sig, feeds, outputs)
        if self.observe is not None:
            self.observe(rows, time.perf_counter() - t0)
        return out

    def execute(self, run: Run, group: List[Item]) -> None:
        """Run ``group`` (alone or together), each member's result or error set on it."""
        if len(group) == 1:
            self.alone(run, group[0])
        else:
            self.together(run, group)

    def alone(self, run: Run, it: Item) -> None:
        try:
            it.result = self.call(run, it.sig, it.feeds, it.outputs, it.rows)
        except Exception as e:  # handed to the request's own thread, raised there
            it.error = e

    def together(self, run: Run, group: List[Item]) -> None:
        first = group[0]
        feeds = {n: np.concatenate([it.feeds[n] for it in group]) for n in first.feeds}
        total = sum(it.rows for it in group)
        try:
            out = self.call(run, first.sig, feeds, first.outputs, total)
        except Exception:  # some request of the group was bad: find it by running alone
            for it in group:
                self.alone(run, it)
            return
        if any(v.ndim == 0 or v.shape[0] != total for v in out.values()):
            sig_key = (first.sig.name, tuple(first.outputs))
            if sig_key not in self.unbatchable:
                self.unbatchable.add(sig_key)
                log.warning("signature %r: outputs %s do not keep the batch dimension; its "
                            "requests run unbatched", first.sig.name,
                            {n: list(v.shape) for n, v in out.items()})
            for it in group:
                self.alone(run, it)
            return
        start = 0
        for it in group:
            it.result = {n: v[start:start + it.rows] for n, v in out.items()}
            start += it.rows


__all__ = ["Item", "Observe", "Outputs", "Policy", "Run", "admit_group", "batch_key", "ready_group",
           "take_group"]
