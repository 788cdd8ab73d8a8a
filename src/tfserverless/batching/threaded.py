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
group runs.  ASGI servers await the same policy on the loop (``aio``).
"""

from __future__ import annotations

import collections
import threading
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..protocol.signature import Signature
from .policy import Item, Outputs, Policy, Run, admit_group, ready_group, take_group


class Batcher:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._pending: Deque[Item] = collections.deque()
        self.calls = 0

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def run(self, run: Run, sig: Signature, feeds: Dict[str, np.ndarray], outputs: Sequence[str],
            *, deadline: float = float("inf")) -> Tuple[Outputs, float]:
        """``run(sig, feeds, outputs)``, batched with concurrent requests where possible:
        ``(outputs, seconds waited for a batch)``."""
        p = self.policy
        keyed = p.key(sig, feeds, outputs)
        if keyed is None:
            return p.call(run, sig, feeds, outputs, 0), 0.0
        key, rows = keyed
        item = Item(key, rows, sig, feeds, outputs, self.policy.clock(), deadline)
        item.event = threading.Event()
        with self._lock:
            self._pending.append(item)
            self._launch(item)
        while item.state == "pending":  # state changes under the lock, then the event is set
            wake_at = min(item.deadline, item.arrived + p.max_batch_timeout) \
                if self.calls < p.max_calls else item.deadline
            item.event.wait(None if wake_at == float("inf") else max(0.0, wake_at - self.policy.clock()))
            with self._lock:
                if item.state == "pending":
                    item.event.clear()
                    if self.policy.clock() >= item.deadline:
                        self._drop(item, self.policy.timeout_error())
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
        p = self.policy
        while self._pending and self.calls < p.max_calls:
            group, _ = ready_group(self._pending, p.max_batch_size, self.calls,
                                   p.max_batch_timeout, p.clock())
            if group is None:
                return
            self._start(group, me)

    def _start(self, group: List[Item], me: Optional[Item]) -> None:
        live, late = admit_group(self._pending, group, self.policy.clock())
        for it in late:
            it.error = self.policy.timeout_error()
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
                group, _ = take_group(self._pending, self.policy.max_batch_size)
                self._start(group, None)
                self._launch(None)

    # outside the lock ------------------------------------------------------------------------

    def _execute(self, run: Run, group: List[Item]) -> None:
        try:
            self.policy.execute(run, group)
        finally:
            self._finish()
            for it in group:
                if it.state != "lead":
                    it.state = "done"
                    it.event.set()


__all__ = ["Batcher"]
