"""EAS admission control, per worker process: ``RPC_WORKER_THREADS`` requests run at once,
``RPC_MAX_QUEUE_SIZE`` wait; a full queue answers 450 at once, a request past
``RPC_KEEPALIVE`` (queue wait included) 408, over ``RPC_RATE_LIMIT`` a second 429; request
bodies in flight are bounded by ``MAX_INFLIGHT_BYTES``, and what one client address holds of
them by ``MAX_INFLIGHT_BYTES_PER_CLIENT`` (450 beyond); bytes are counted as they arrive
(inflated and parsed JSON bodies at what they then take), and only once the request's headers
were authorised, so a client without the token holds nothing.

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
from typing import Any, Callable, Deque, Dict, List, Optional

from ..config import Config, in_service
from ..errors import ClientGone, QueueFull, RequestTimeout, TooManyRequests
from ..futures import resolve

#: makes the future that completes when the client disconnects (see ``acquire_async``)
Watch = Callable[[], "asyncio.Future[Any]"]


class Limits:
    __slots__ = ("inflight_bytes", "keepalive", "peer_inflight_bytes", "peer_requests",
                 "queue_size", "rate_limit", "workers")

    def __init__(self, *, workers: int = 5, queue_size: int = 64, keepalive: float = 60.0,
                 rate_limit: float = 0.0, inflight_bytes: int = 256 << 20,
                 peer_inflight_bytes: Optional[int] = None,
                 peer_requests: Optional[int] = None) -> None:
        self.workers = max(1, workers)
        self.queue_size = max(0, queue_size)
        self.keepalive = keepalive  # seconds; 0 = unbounded
        self.rate_limit = rate_limit  # requests a second; 0 = off
        self.inflight_bytes = inflight_bytes
        # what one client address may hold of it (default: half)
        self.peer_inflight_bytes = inflight_bytes // 2 if peer_inflight_bytes is None \
            else peer_inflight_bytes
        # requests one client address may have running or queued at once (0: no bound)
        self.peer_requests = 0 if peer_requests is None else peer_requests


class Held:
    """The bytes one request holds in flight (its body as it arrived, what inflating it and
    parsing its JSON add), and its client's address."""

    __slots__ = ("n", "peer")

    def __init__(self, peer: str = "") -> None:
        self.n = 0
        self.peer = peer


def limits_for(config: Config) -> Limits:
    """The admission limits a service's settings ask for (EAS's ``metadata.rpc.*``)."""
    return Limits(workers=in_service(config.rpc_batching, config.rpc_worker_threads,
                                     config.rpc_max_batch_size),
                  queue_size=config.rpc_max_queue_size,
                  keepalive=config.rpc_keepalive_ms / 1000.0, rate_limit=config.rpc_rate_limit,
                  inflight_bytes=config.max_inflight_bytes,
                  peer_inflight_bytes=config.max_inflight_bytes_per_client,
                  peer_requests=config.max_requests_per_client)


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
        self._peers: Dict[str, int] = {}  # client address -> bytes it holds (none: absent)
        self._peer_requests: Dict[str, int] = {}  # client address -> requests running or queued
        self._tokens = float(max(1.0, limits.rate_limit))
        self._refilled = clock()
        self.shed = {450: 0, 408: 0, 429: 0}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def deadline(self, within: Optional[float] = None) -> float:
        """When a request arriving now must be answered: ``RPC_KEEPALIVE`` from now, or
        sooner if its client gives it ``within`` seconds (a gRPC deadline)."""
        k = self.limits.keepalive
        now = self._clock()
        at = now + k if k > 0 else float("inf")
        return at if within is None else min(at, now + max(0.0, within))

    # bytes in flight -------------------------------------------------------------------------

    def held(self, peer: str = "") -> Held:
        """A request's account of bytes in flight; ``peer``: its client's address."""
        return Held(peer)

    def reserve_bytes(self, held: Held, n: int, *, count: bool = True) -> None:
        """Count ``n`` more bytes of a request (as they arrive, never as declared) against
        ``MAX_INFLIGHT_BYTES`` and its client's ``MAX_INFLIGHT_BYTES_PER_CLIENT``, 450 beyond.
        A request that is alone in flight (or its client's only one) is always let through:
        ``MAX_BODY_BYTES`` bounds it.  ``count=False`` only checks there is room (a body's
        declared length, before reading it: refused at once rather than half-way)."""
        lim = self.limits
        with self._lock:
            if self.inflight - held.n and self.inflight + n > lim.inflight_bytes:
                self.shed[450] += 1
                raise QueueFull(f"{self.inflight} bytes of request bodies in flight; {n} more "
                                f"is over MAX_INFLIGHT_BYTES={lim.inflight_bytes}; retry later or "
                                "on another instance", headers={"Retry-After": "1"})
            mine = self._peers.get(held.peer, 0)
            if held.peer and mine - held.n and mine + n > lim.peer_inflight_bytes:
                self.shed[450] += 1
                raise QueueFull(f"{mine} bytes of this client's request bodies in flight; {n} "
                                f"more is over MAX_INFLIGHT_BYTES_PER_CLIENT="
                                f"{lim.peer_inflight_bytes}; finish those first",
                                headers={"Retry-After": "1"})
            if not count:
                return
            if held.peer:
                self._peers[held.peer] = mine + n
            self.inflight += n
            held.n += n

    def release_bytes(self, held: Held) -> None:
        """Give back everything ``held`` holds."""
        with self._lock:
            self.inflight -= held.n
            if held.peer:
                left = self._peers.get(held.peer, 0) - held.n
                if left > 0:
                    self._peers[held.peer] = left
                else:
                    self._peers.pop(held.peer, None)  # an address holding nothing costs nothing
            held.n = 0

    # slots -----------------------------------------------------------------------------------

    def _enter(self, wake: Callable[[], Callable[[], None]], peer: str = "",
               rated: bool = True) -> Optional[_Ticket]:
        """Under the lock: None when a slot was taken at once (the common case, which makes
        nothing), else the ticket queued with ``wake()``'s callback.  ``peer``: the client's
        address, which may have at most ``limits.peer_requests`` running or queued;
        ``rated``: it spends ``RPC_RATE_LIMIT``'s tokens (a warm-up replay does not)."""
        lim = self.limits
        if peer and lim.peer_requests:
            mine = self._peer_requests.get(peer, 0)
            if mine >= lim.peer_requests:
                self.shed[450] += 1
                raise QueueFull(f"{mine} requests of this client running or queued "
                                f"(MAX_REQUESTS_PER_CLIENT={lim.peer_requests}); wait for those "
                                "or retry later", headers={"Retry-After": "1"})
            self._peer_requests[peer] = mine + 1
        try:
            return self._take(wake, rated)
        except BaseException:
            self._leave(peer)
            raise

    def _leave(self, peer: str) -> None:
        """Under the lock: one request of ``peer`` no longer runs or waits."""
        if peer and self.limits.peer_requests:
            left = self._peer_requests.get(peer, 0) - 1
            if left > 0:
                self._peer_requests[peer] = left
            else:
                self._peer_requests.pop(peer, None)

    def _take(self, wake: Callable[[], Callable[[], None]], rated: bool) -> Optional[_Ticket]:
        lim = self.limits
        if lim.rate_limit > 0 and rated:
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

    def release(self, peer: str = "") -> None:
        """A slot is free: hand it to the oldest live waiter, else give it back.  ``peer``:
        the address of the client whose request held it."""
        with self._lock:
            self._leave(peer)
            while self._waiting:
                t = self._waiting.popleft()
                if t.state == "waiting":
                    t.state = "granted"
                    t.wake()
                    return
            self.running -= 1

    def _abandon(self, ticket: _Ticket, peer: str = "") -> bool:
        """Leave the queue; False when the slot was granted meanwhile (then release it)."""
        with self._lock:
            if ticket.state == "granted":
                return False
            ticket.state = "abandoned"
            self._leave(peer)
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

    def acquire(self, deadline: float, peer: str = "", rated: bool = True) -> None:
        """Take a slot, waiting in the queue until ``deadline`` (sync servers)."""
        events: List[threading.Event] = []

        def wake() -> Callable[[], None]:  # made only when the request must queue
            events.append(threading.Event())
            return events[0].set

        with self._lock:
            ticket = self._enter(wake, peer, rated)
        if ticket is None:
            return
        remaining = deadline - self._clock()
        granted = events[0].wait(None if remaining == float("inf") else max(0.0, remaining))
        if not granted and self._abandon(ticket, peer):
            raise self.timeout_error()
        self._granted(deadline, peer)

    async def acquire_async(self, deadline: float, watch: Optional[Watch] = None,
                            peer: str = "", rated: bool = True) -> None:
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
            ticket = self._enter(wake, peer, rated)
        if ticket is None:
            return
        fut = futs[0]
        gone = watch() if watch is not None else None
        remaining = deadline - self._clock()
        waits = {fut} if gone is None else {fut, gone}
        try:
            await asyncio.wait(waits, timeout=None if remaining == float("inf")
                               else max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # its task was cancelled: nothing waits for the slot
            if not self._abandon(ticket, peer):
                self.release(peer)
            raise
        if ticket.state != "granted" and self._abandon(ticket, peer):
            if gone is not None and gone.done():
                raise ClientGone("client disconnected while queued")
            raise self.timeout_error()
        self._granted(deadline, peer)
        if gone is not None and gone.done():
            self.release(peer)
            raise ClientGone("client disconnected while queued")

    def _granted(self, deadline: float, peer: str = "") -> None:
        if self._clock() >= deadline:  # got the slot too late: it goes to the next waiter
            self.release(peer)
            raise self.timeout_error()


