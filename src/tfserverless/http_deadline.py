"""A deadline on request heads for uvicorn's HTTP/1.1 protocols (``HEADER_READ_TIMEOUT``).

uvicorn's parsers put no limit on how long a request line and its headers may take to
arrive: a connection that stops mid-headers, or sends nothing, stays open for ever, and so
does one that sends a header byte a second (slowloris).  ``HeaderDeadlineWorker`` is
uvicorn's gunicorn worker with its HTTP protocol wrapped (``CONFIG_KWARGS["http"]``, which
uvicorn's ``Config`` takes as a class): each request's head must be complete within
``HEADER_READ_TIMEOUT`` seconds of

* the connection opening, for its first request (a connection that sends nothing included);
* the first byte of each later request on a keep-alive connection: the idle time before it
  is uvicorn's own ``timeout_keep_alive`` (gunicorn's ``keepalive``).

Past it the client gets a 408 with one line naming the limit and ``Connection: close``, and
the connection is closed.  The timer is set once per head and never pushed back by the bytes
that arrive, so a trickle costs no more than a stall: one timer per connection.  A pipelined
head that stalls behind a response still being written gets no 408 in the middle of it: the
connection closes once that response is complete (httptools; h11 reads no pipelined head
until the response before it is done, so there its deadline starts with its next byte).  The
deadline bounds time, not bytes: the head's size is the app's 431 once it is in.

The protocol wrapped is the one uvicorn's ``http="auto"`` picks: httptools' where httptools
is importable, else h11's, each recognised by what it has (httptools' parser callbacks,
h11's connection state).  An uvicorn whose protocol has neither (an older or newer layout)
is served by its own protocol with no deadline, rather than failing to start:
``protocol_class`` returns None then, as it does for ``HEADER_READ_TIMEOUT=0``.

Self-contained: imports only ``config``, and uvicorn, h11 and gunicorn where installed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from .config import header_read_timeout

log = logging.getLogger("tfserverless")

#: uvicorn's gunicorn worker, where each uvicorn release keeps it (newest first)
UVICORN_WORKERS = ("uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornWorker")


def reply_408(timeout: float, default_headers: List[Tuple[bytes, bytes]]) -> bytes:
    body = (f"request headers not complete within {timeout:g}s (HEADER_READ_TIMEOUT); "
            "expected the request line and every header sooner\n").encode("ascii")
    head = [b"HTTP/1.1 408 Request Timeout\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n",
             b"content-length: %d\r\n\r\n" % len(body)]
    return b"".join(head) + body


class HeadDeadline(asyncio.Protocol):
    """What both wrapped protocols share: one timer for the head being read, if any."""

    head_timeout = 0.0  # set by ``wrap``
    _head_timer: Optional[asyncio.TimerHandle] = None

    def _head_start(self) -> None:
        if self._head_timer is None and self.head_timeout > 0:
            loop = getattr(self, "loop", None) or asyncio.get_event_loop()
            self._head_timer = loop.call_later(self.head_timeout, self._head_expired)

    def _head_stop(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        transport = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not getattr(cycle, "response_complete", True):
            cycle.keep_alive = False  # as uvicorn's shutdown(): closed after this response
            return
        log.debug("%s: request head not complete within %gs; 408",
                  getattr(self, "client", None), self.head_timeout)
        state = getattr(self, "server_state", None)
        transport.write(reply_408(self.head_timeout, getattr(state, "default_headers", [])))
        transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_start()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._head_stop()
        super().connection_lost(exc)


class HttptoolsHeadDeadline(HeadDeadline):
    """httptools' parser calls back at a request's first byte and at the end of its head."""

    def on_message_begin(self) -> None:
        self._head_start()
        super().on_message_begin()  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        self._head_stop()
        super().on_headers_complete()  # type: ignore[misc]


class H11HeadDeadline(HeadDeadline):
    """h11's connection says whether it waits for a head: ``their_state`` is IDLE until a
    request's head is parsed (and again once both sides are done with it)."""

    h11_idle: Any = None  # h11.IDLE, set by ``wrap``

    def _awaiting_head(self) -> bool:
        conn = getattr(self, "conn", None)
        return conn is not None and getattr(conn, "their_state", None) is self.h11_idle

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self._awaiting_head():  # not the h11 connection we know: no deadline
            self._head_stop()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head():  # a request's first bytes (or more of its head)
            self._head_start()
        super().data_received(data)
        if not self._awaiting_head():  # its head is in (or the connection failed)
            self._head_stop()


def wrap(base: Any, timeout: float) -> Optional[Any]:
    """``base`` (uvicorn's httptools or h11 protocol class) with a ``timeout`` on each request
    head; None when ``timeout`` is 0 or ``base`` is neither as we know it."""
    if not timeout > 0:
        return None
    attrs: Dict[str, Any] = {"head_timeout": float(timeout)}
    if all(callable(getattr(base, m, None)) for m in
           ("on_message_begin", "on_headers_complete", "connection_made", "connection_lost")):
        mixin: Any = HttptoolsHeadDeadline
    elif base.__module__.endswith("h11_impl") and callable(getattr(base, "data_received", None)):
        try:
            import h11
        except ImportError:
            return None
        mixin, attrs["h11_idle"] = H11HeadDeadline, h11.IDLE
    else:
        return None
    return type(base.__name__ + "HeadDeadline", (mixin, base), attrs)


def protocol_class(timeout: float) -> Optional[Any]:
    """uvicorn's ``http="auto"`` protocol with the head deadline, or None (no deadline)."""
    try:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol
    except ImportError:
        return None
    return wrap(AutoHTTPProtocol, timeout)


def base_worker() -> Optional[Any]:
    """uvicorn's gunicorn worker class, None where neither it nor gunicorn is installed."""
    for path in UVICORN_WORKERS:
        module, _, name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    return None


BaseWorker = base_worker()

if BaseWorker is not None:
    class HeaderDeadlineWorker(BaseWorker):  # type: ignore[misc,valid-type]
        """uvicorn's worker with ``protocol_class(HEADER_READ_TIMEOUT)`` as its protocol,
        chosen in each worker process as it starts (uvicorn's own where there is none)."""

        CONFIG_KWARGS: Dict[str, Any]  # uvicorn's: what its Config is built with

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            http = protocol_class(header_read_timeout(os.environ))
            if http is not None:
                self.CONFIG_KWARGS = {**self.CONFIG_KWARGS, "http": http}
            super().__init__(*args, **kwargs)


__all__ = ["UVICORN_WORKERS", "base_worker", "protocol_class", "reply_408", "wrap"]
