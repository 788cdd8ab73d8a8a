"""Adaptive request batching (EAS ``metadata.rpc.batching``), per worker process.

No fixed wait: while no model call runs, a request runs at once, alone.  While calls run,
arrivals gather; when a call ends, the oldest gathered group goes as one call.  A group also
goes when it is full (``max_batch_size`` rows) or its oldest request has waited
``max_batch_timeout``, if fewer than ``max_calls`` calls (``RPC_WORKER_THREADS``) run.

Requests join one group only when signature, outputs, dtypes and every non-batch dimension
match (``batch_key``); they were validated before joining, so a bad request fails alone.  If
a batched call fails, or its outputs cannot be split by rows (an output without the batch
dimension), every request of it runs again alone: nobody gets a neighbour's error or a wrong
answer; an unsplittable signature is remembered, logged once, and never batched again.

Waiting here happens in the request's own thread (sync servers: Flask, Lambda, FC); the
thread that takes a group runs it.  A waiter whose deadline passes is dropped before its
group runs.  ASGI servers await the same policy on the loop (``batching_async``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import TFServerlessError
from ..protocol.signature import Signature

log = logging.getLogger("tfserverless")

Outputs = Dict[str, np.ndarray]
Run = Callable[[Signature, Dict[str, np.ndarray], Sequence[str]], Outputs]
#: (rows, seconds) of each model call, for metrics
Observe = Callable[[int, float], None]


def batch_key(sig: Signature, feeds: Dict[str, np.ndarray],
              outputs: Sequence[str]) -> Optional[Tuple[Hashable, int]]:
    """``(key, rows)``: requests with equal keys can share a call; None when this one cannot
    (a scalar input, inputs with different first dimensions)."""
    rows = -1
    parts: List[Hashable] = [sig.name, tuple(outputs)]
    for name in sorted(feeds):
        a = feeds[name]
        if a.ndim == 0 or (rows >= 0 and a.shape[0] != rows):
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


class Batcher:
    def __init__(self, *, max_batch_size: int = 16, max_batch_timeout: float = 0.05,
                 max_calls: int = 5, timeout_error: Callable[[], TFServerlessError],
                 observe: Optional[Observe] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_timeout = max_batch_timeout
        self.max_calls = max(1, max_calls)
        self._timeout_error = timeout_error
        self._observe = observe
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Deque[Item] = collections.deque()
        self.calls = 0
        self.unbatchable: Set[Tuple[str, Tuple[str, ...]]] = set()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def run(self, run: Run, sig: Signature, feeds: Dict[str, np.ndarray], outputs: Sequence[str],
            *, deadline: float = float("inf")) -> Tuple[Outputs, float]:
        """``run(sig, feeds, outputs)``, batched with concurrent requests where possible:
        ``(outputs, seconds waited for a batch)``."""
        keyed = batch_key(sig, feeds, outputs)
        if keyed is None or (sig.name, tuple(outputs)) in self.unbatchable:
            return self._call(run, sig, feeds, outputs, 0), 0.0
        key, rows = keyed
        item = Item(key, rows, sig, feeds, outputs, self._clock(), deadline)
        item.event = threading.Event()
        with self._lock:
            self._pending.append(item)
            self._launch(item)
        while item.state == "pending":  # state changes under the lock, then the event is set
            wake_at = min(item.deadline, item.arrived + self.max_batch_timeout) \
                if self.calls < self.max_calls else item.deadline
            item.event.wait(None if wake_at == float("inf") else max(0.0, wake_at - self._clock()))
            with self._lock:
                if item.state == "pending":
                    item.event.clear()
                    if self._clock() >= item.deadline:
                        self._drop(item, self._timeout_error())
                    else:
                        self._launch(item)
        if item.state == "member":  # its group runs in the leader's thread
            item.event.wait()
        if item.state == "lead":
            self._execute(run, item.group)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result, item.waited

    # under the lock --------------------------------------------------------------------------

    def _drop(self, item: Item, error: BaseException) -> None:
        item.state, item.error = "dropped", error
        self._pending.remove(item)
        item.event.set()

    def _launch(self, me: Optional[Item]) -> None:
        """Start every group that may start now (``ready_group``), within ``max_calls``."""
        while self._pending and self.calls < self.max_calls:
            group, _ = ready_group(self._pending, self.max_batch_size, self.calls,
                                   self.max_batch_timeout, self._clock())
            if group is None:
                return
            self._start(group, me)

    def _start(self, group: List[Item], me: Optional[Item]) -> None:
        live, late = admit_group(self._pending, group, self._clock())
        for it in late:
            it.error = self._timeout_error()
            it.event.set()
        if not live:
            return
        leader = me if me is not None and me in live else live[0]
        leader.state, leader.group = "lead", live
        self.calls += 1
        if leader is not me:
            leader.event.set()

    def _finish(self) -> None:
        with self._lock:
            self.calls -= 1
            if self._pending:  # the call ended: the oldest group goes now, whatever its size
                group, _ = take_group(self._pending, self.max_batch_size)
                self._start(group, None)
                self._launch(None)

    # outside the lock ------------------------------------------------------------------------

    def _call(self, run: Run, sig: Signature, feeds: Dict[str, np.ndarray], outputs: Sequence[str],
              rows: int) -> Outputs:
        t0 = time.perf_counter()
        out = run(sig, feeds, outputs)
        if self._observe is not None:
            self._observe(rows, time.perf_counter() - t0)
        return out

    def _execute(self, run: Run, group: List[Item]) -> None:
        try:
            if len(group) == 1:
                self._alone(run, group[0])
            else:
                self._together(run, group)
        finally:
            self._finish()
            for it in group:
                if it.state != "lead":
                    it.state = "done"
                    it.event.set()

    def _alone(self, run: Run, it: Item) -> None:
        try:
            it.result = self._call(run, it.sig, it.feeds, it.outputs, it.rows)
        except Exception as e:  # handed to the request's own thread, raised there
            it.error = e

    def _together(self, run: Run, group: List[Item]) -> None:
        first = group[0]
        feeds = {n: np.concatenate([it.feeds[n] for it in group]) for n in first.feeds}
        total = sum(it.rows for it in group)
        try:
            out = self._call(run, first.sig, feeds, first.outputs, total)
        except Exception:  # some request of the group was bad: find it by running alone
            for it in group:
                self._alone(run, it)
            return
        if any(v.ndim == 0 or v.shape[0] != total for v in out.values()):
            sig_key = (first.sig.name, tuple(first.outputs))
            if sig_key not in self.unbatchable:
                self.unbatchable.add(sig_key)
                log.warning("signature %r: outputs %s do not keep the batch dimension; its "
                            "requests run unbatched", first.sig.name,
                            {n: list(v.shape) for n, v in out.items()})
            for it in group:
                self._alone(run, it)
            return
        start = 0
        for it in group:
            it.result = {n: v[start:start + it.rows] for n, v in out.items()}
            start += it.rows


__all__ = ["Batcher", "Item", "batch_key", "take_group"]
