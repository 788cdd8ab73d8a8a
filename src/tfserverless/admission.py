"""EAS admission control, per worker process: ``RPC_WORKER_THREADS`` requests run at once,
``RPC_MAX_QUEUE_SIZE`` wait; a full queue answers 450 at once, a request past
``RPC_KEEPALIVE`` (queue wait included) 408, over ``RPC_RATE_LIMIT`` a second 429; request
bodies in flight are bounded by ``MAX_INFLIGHT_BYTES`` (450 beyond).

Waiters are served first come, first served.  A slot is handed from the request that frees it
to the next live waiter; a waiter whose deadline passed or whose client left is removed and
never reaches the model.  Sync servers wait on a ``threading.Event``; ASGI servers await a
future, so queued requests hold no thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from typing import Any, Callable, Deque, List, Optional

from .errors import ClientGone, QueueFull, RequestTimeout, TooManyRequests

#: makes the future that completes when the client disconnects (see ``acquire_async``)
Watch = Callable[[], "asyncio.Future[Any]"]


class Limits:
    __slots__ = ("inflight_bytes", "keepalive", "queue_size", "rate_limit", "workers")

    def __init__(self, *, workers: int = 5, queue_size: int = 64, keepalive: float = 60.0,
                 rate_limit: float = 0.0, inflight_bytes: int = 256 << 20) -> None:
        self.workers = max(1, workers)
        self.queue_size = max(0, queue_size)
        self.keepalive = keepalive  # seconds; 0 = unbounded
        self.rate_limit = rate_limit  # requests a second; 0 = off
        self.inflight_bytes = inflight_bytes


def in_service(batching: bool, worker_threads: int, max_batch_size: int) -> int:
    """Requests admitted at once: with batching, each of the ``worker_threads`` model calls
    may carry ``max_batch_size`` requests (see ``batching``)."""
    return worker_threads * max(1, max_batch_size) if batching else worker_threads


class _Ticket:
    __slots__ = ("state", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.state = "waiting"  # -> "granted" (holds a slot) or "abandoned"
        self.wake = wake


class Admission:
    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: Deque[_Ticket] = collections.deque()
        self.running = 0
        self.inflight = 0
        self._tokens = float(max(1.0, limits.rate_limit))
        self._refilled = clock()
        self.shed = {450: 0, 408: 0, 429: 0}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def deadline(self) -> float:
        k = self.limits.keepalive
        return self._clock() + k if k > 0 else float("inf")

    # bytes in flight -------------------------------------------------------------------------

    def reserve_bytes(self, n: int) -> None:
        """Count a request body against ``MAX_INFLIGHT_BYTES`` before reading it; a body alone
        (nothing else in flight) is always let through (``MAX_BODY_BYTES`` bounds it)."""
        with self._lock:
            if self.inflight and self.inflight + n > self.limits.inflight_bytes:
                self.shed[450] += 1
                raise QueueFull(f"{self.inflight} bytes of request bodies in flight; a body of {n} "
                                f"more is over MAX_INFLIGHT_BYTES={self.limits.inflight_bytes}; "
                                "retry later or on another instance", headers={"Retry-After": "1"})
            self.inflight += n

    def release_bytes(self, n: int) -> None:
        with self._lock:
            self.inflight -= n

    # slots -----------------------------------------------------------------------------------

    def _enter(self, wake: Callable[[], Callable[[], None]]) -> Optional[_Ticket]:
        """Under the lock: None when a slot was taken at once (the common case, which makes
        nothing), else the ticket queued with ``wake()``'s callback."""
        lim = self.limits
        if lim.rate_limit > 0:
            now = self._clock()
            self._tokens = min(max(1.0, lim.rate_limit),
                               self._tokens + (now - self._refilled) * lim.rate_limit)
            self._refilled = now
            if self._tokens < 1.0:
                self.shed[429] += 1
                raise TooManyRequests(f"over RPC_RATE_LIMIT={lim.rate_limit:g} requests a second",
                                      headers={"Retry-After": "1"})
            self._tokens -= 1.0
        if self.running < lim.workers and not self._waiting:
            self.running += 1
            return None
        if len(self._waiting) >= lim.queue_size:
            self.shed[450] += 1
            raise QueueFull(f"queue full: {self.running} running (RPC_WORKER_THREADS={lim.workers})"
                            f" and {len(self._waiting)} waiting (RPC_MAX_QUEUE_SIZE="
                            f"{lim.queue_size}); retry on another instance",
                            headers={"Retry-After": "1"})
        ticket = _Ticket(wake())
        self._waiting.append(ticket)
        return ticket

    def release(self) -> None:
        """A slot is free: hand it to the oldest live waiter, else give it back."""
        with self._lock:
            while self._waiting:
                t = self._waiting.popleft()
                if t.state == "waiting":
                    t.state = "granted"
                    t.wake()
                    return
            self.running -= 1

    def _abandon(self, ticket: _Ticket) -> bool:
        """Leave the queue; False when the slot was granted meanwhile (then release it)."""
        with self._lock:
            if ticket.state == "granted":
                return False
            ticket.state = "abandoned"
            with contextlib.suppress(ValueError):
                self._waiting.remove(ticket)
            return True

    def timeout_error(self) -> RequestTimeout:
        with self._lock:
            self.shed[408] += 1
        k = self.limits.keepalive
        return RequestTimeout(f"request not served within RPC_KEEPALIVE={k * 1000:.0f} ms "
                              "(queue wait included); retry later or on another instance",
                              headers={"Retry-After": "1"})

    def check_deadline(self, deadline: float) -> None:
        if self._clock() >= deadline:
            raise self.timeout_error()

    def acquire(self, deadline: float) -> None:
        """Take a slot, waiting in the queue until ``deadline`` (sync servers)."""
        events: List[threading.Event] = []

        def wake() -> Callable[[], None]:  # made only when the request must queue
            events.append(threading.Event())
            return events[0].set

        with self._lock:
            ticket = self._enter(wake)
        if ticket is None:
            return
        remaining = deadline - self._clock()
        granted = events[0].wait(None if remaining == float("inf") else max(0.0, remaining))
        if not granted and self._abandon(ticket):
            raise self.timeout_error()
        self._granted(deadline)

    async def acquire_async(self, deadline: float, watch: Optional[Watch] = None) -> None:
        """Take a slot, awaiting in the queue until ``deadline`` or until the client leaves:
        ``watch()`` gives a future that completes on its disconnect, asked for only when the
        request has to queue (most never do).  Holds no thread meanwhile."""
        futs: List[asyncio.Future[None]] = []

        def wake() -> Callable[[], None]:  # made only when the request must queue
            loop = asyncio.get_running_loop()
            futs.append(loop.create_future())

            def set_it() -> None:
                loop.call_soon_threadsafe(resolve, futs[0])

            return set_it

        with self._lock:
            ticket = self._enter(wake)
        if ticket is None:
            return
        fut = futs[0]
        gone = watch() if watch is not None else None
        remaining = deadline - self._clock()
        waits = {fut} if gone is None else {fut, gone}
        await asyncio.wait(waits, timeout=None if remaining == float("inf") else max(0.0, remaining),
                           return_when=asyncio.FIRST_COMPLETED)
        if ticket.state != "granted" and self._abandon(ticket):
            if gone is not None and gone.done():
                raise ClientGone("client disconnected while queued")
            raise self.timeout_error()
        self._granted(deadline)
        if gone is not None and gone.done():
            self.release()
            raise ClientGone("client disconnected while queued")

    def _granted(self, deadline: float) -> None:
        if self._clock() >= deadline:  # got the slot too late: it goes to the next waiter
            self.release()
            raise self.timeout_error()


def resolve(fut: asyncio.Future[None]) -> None:
    """Complete ``fut`` unless it already is (a waiter may have timed out meanwhile)."""
    if not fut.done():
        fut.set_result(None)
