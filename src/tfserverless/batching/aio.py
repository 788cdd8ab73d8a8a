"""Adaptive batching for ASGI servers: the ``policy.Policy`` ``threaded.Batcher`` follows,
awaited on the event loop, so a request waiting for its batch holds a future, not a thread.

A request that finds no call running starts one on the next turn of the loop (requests
parsed in the same turn join it).  While calls run, arrivals gather; when a call ends, the
oldest group goes next; a full group, or one whose oldest request waited
``max_batch_timeout``, may go beside running calls up to ``max_calls``.  A model call runs in
a thread so the loop keeps reading and answering meanwhile, or on the loop itself when recent
calls, scaled to its rows, took under ``inline`` seconds (the predictor's ``INLINE_SECONDS``:
the one rule for what may run on the loop, the delay it may cost requests behind it; the
predictor scales by body size as this does by rows).
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import Executor
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ClientGone
from ..protocol.signature import Signature
from .policy import Item, Outputs, Policy, Run, admit_group, ready_group

#: after this many lone calls in a row, requests run at once, as without batching (no extra
#: turn of the loop, and on the loop if calls take under ``inline`` seconds); one in
#: ``PROBE_EVERY`` still takes the turn, which is how load coming back is noticed
ALONE_LIMIT = 8
PROBE_EVERY = 16

Gone = Callable[[], "asyncio.Future[Any]"]


class AsyncBatcher:
    def __init__(self, policy: Policy, executor: Executor, *, inline: float = 0.002) -> None:
        self.policy = policy  # settings, the unbatchable set, the call and split logic
        self.executor = executor
        self.inline = inline
        self._alone = 0  # lone calls in a row
        self._skipped = 0
        self._pending: Deque[Item] = collections.deque()
        self.calls = 0
        self._scheduled = False
        self._timer: Optional[asyncio.TimerHandle] = None
        # (seconds, rows) of recent calls
        self._recent: Deque[Tuple[float, int]] = collections.deque(maxlen=8)
        self._run: Optional[Run] = None  # the model's run (one model per service)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def run(self, run: Run, sig: Signature, feeds: Dict[str, np.ndarray],
                  outputs: Sequence[str], *, deadline: float = float("inf"),
                  gone: Optional[Gone] = None) -> Tuple[Outputs, float]:
        """``run(sig, feeds, outputs)`` batched with concurrent requests where possible:
        ``(outputs, seconds waited before the call)``.  ``gone()`` gives a future that
        completes when the client leaves; it is asked for only if the request must wait."""
        pol = self.policy
        self._run = run
        n = _rows(feeds)
        if self._at_once() and self._inline(n):
            t0 = time.perf_counter()  # no load: what the unbatched path does, at its cost
            out = pol.call(run, sig, feeds, outputs, n)
            self._recent.append((time.perf_counter() - t0, max(1, n)))
            return out, 0.0
        keyed = pol.key(sig, feeds, outputs)
        if keyed is None:
            keyed = (object(), 0)  # a group of its own
        loop = asyncio.get_running_loop()
        item = Item(keyed[0], keyed[1], sig, feeds, outputs, pol.clock(), deadline)
        item.future = loop.create_future()
        self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._launch)
        if self.calls and gone is not None:  # it will wait: drop it if its client leaves
            gone().add_done_callback(lambda _: self._drop(item, ClientGone(
                "client disconnected while waiting for a batch")))
        timer = None
        if deadline != float("inf"):  # past it: 408 now, whether it waits or runs
            timer = loop.call_later(max(0.0, deadline - pol.clock()),
                                    lambda: self._drop(item, pol.timeout_error()))
        try:
            answer: Tuple[Outputs, float] = await item.future
            return answer
        except asyncio.CancelledError:
            self._drop(item, None)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _inline(self, rows: int) -> bool:
        """Whether a call of ``rows`` rows may run on the loop: a recent call, scaled to
        that many rows, took under ``inline`` seconds (a call of one row says nothing of
        one of thousands)."""
        return any(s * max(1.0, rows / r) < self.inline for s, r in self._recent)

    def _at_once(self) -> bool:
        """Whether a request should run at once: nothing runs or waits, recent calls were
        lone ones, and this is not a probe."""
        if self.calls or self._pending or self._alone < ALONE_LIMIT:
            return False
        self._skipped += 1
        return self._skipped % PROBE_EVERY != 0

    def _drop(self, item: Item, error: Optional[BaseException]) -> None:
        """Answer ``error`` now; a waiting request leaves the queue, a running one's result
        is dropped when its call ends (the call itself cannot be stopped)."""
        if item.state == "pending":
            item.state = "dropped"
            self._pending.remove(item)
        if error is not None and not item.future.done():
            item.future.set_exception(error)

    def _launch(self) -> None:
        self._scheduled = False
        pol = self.policy
        while self._pending and self.calls < pol.max_calls:
            group, wait = ready_group(self._pending, pol.max_batch_size, self.calls,
                                      pol.max_batch_timeout, pol.clock())
            if group is None:
                self._arm(wait)
                return
            live, late = admit_group(self._pending, group, pol.clock())
            for it in late:
                it.future.set_exception(pol.timeout_error())
            if not live:
                continue
            self._alone = self._alone + 1 if len(live) == 1 else 0
            self.calls += 1
            rows = sum(max(1, it.rows) for it in live)
            if self._inline(rows):
                self._execute(live, rows)
                self._done(live)
            else:
                self.executor.submit(self._execute, live, rows).add_done_callback(
                    self._finisher(asyncio.get_running_loop(), live))

    def _finisher(self, loop: asyncio.AbstractEventLoop, group: List[Item]) -> Callable[[Any], object]:
        return lambda _: loop.call_soon_threadsafe(self._done, group)

    def _arm(self, delay: float) -> None:
        if self._timer is None or self._timer.when() > asyncio.get_running_loop().time() + delay:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._launch()

    def _execute(self, group: List[Item], rows: int) -> None:
        assert self._run is not None
        t0 = time.perf_counter()
        self.policy.execute(self._run, group)
        self._recent.append((time.perf_counter() - t0, rows))

    def _done(self, group: List[Item]) -> None:
        self.calls -= 1
        for it in group:
            if it.future.done():  # its waiter gave up meanwhile
                continue
            if it.error is not None:
                it.future.set_exception(it.error)
            else:
                it.future.set_result((it.result, it.waited))
        if self._pending:
            self._launch()


def _rows(feeds: Dict[str, np.ndarray]) -> int:
    for a in feeds.values():
        return int(a.shape[0]) if a.ndim else 1
    return 1


__all__ = ["AsyncBatcher"]
