"""A deadline and a byte cap on request heads for uvicorn's HTTP/1.1 protocols.

uvicorn's parsers put no limit on how long a request line and its headers may take to
arrive: a connection that stops mid-headers, or sends nothing, stays open for ever, and so
does one that sends a header byte a second (slowloris).  httptools' puts none on their size
either: header lines sent without end are each parsed and kept.  ``HeadGuardWorker`` is
uvicorn's gunicorn worker with its HTTP protocol wrapped (``CONFIG_KWARGS["http"]``, which
uvicorn's ``Config`` takes as a class).

Time (``HEADER_READ_TIMEOUT``): each request's head must be complete within that many
seconds of

* the connection opening, for its first request (a connection that sends nothing included);
* the first byte of each later request on a keep-alive connection: the idle time before it
  is uvicorn's own ``timeout_keep_alive`` (gunicorn's ``keepalive``).

Past it the client gets a 408 with one line naming the limit and ``Connection: close``, and
the connection is closed.  The timer is set once per head and never pushed back by the bytes
that arrive, so a trickle costs no more than a stall: one timer per connection.

Bytes (``config.MAX_HEAD_BYTES``, 128 KiB: the app's 64 KiB of headers and as much again for
the URL): a request line and header block that passes it before it is complete is a 431 with
one line and ``Connection: close``, and nothing more is parsed or kept, so a head costs at
most the cap plus one read.  Bytes are counted as they reach the parser and the count
restarts with each request, as the deadline does; a body is not counted (``MAX_BODY_BYTES``
and ``BODY_READ_TIMEOUT`` govern it).

A pipelined head that stalls, or passes the cap, behind a response still being written gets
no 408 or 431 in the middle of it: the connection closes once that response is complete
(httptools; h11 reads no pipelined head until the response before it is done, so there its
deadline and count start with its next byte).

The protocol wrapped is the one uvicorn's ``http="auto"`` picks: httptools' where httptools
is importable, else h11's, each recognised by what it has (httptools' parser callbacks,
h11's connection state).  An uvicorn whose protocol has neither (an older or newer layout)
is served by its own protocol with neither limit, rather than failing to start:
``protocol_class`` returns None then, as it does when both limits are 0.

Self-contained: imports only ``config``, and uvicorn, h11 and gunicorn where installed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from .config import MAX_HEAD_BYTES, header_read_timeout

log = logging.getLogger("tfserverless")

#: uvicorn's gunicorn worker, where each uvicorn release keeps it (newest first)
UVICORN_WORKERS = ("uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornWorker")


def reply(status: bytes, text: str, default_headers: List[Tuple[bytes, bytes]]) -> bytes:
    """A complete response: ``status`` line, one line of ``text``, ``Connection: close``."""
    body = (text + "\n").encode("ascii")
    head = [b"HTTP/1.1 " + status + b"\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n",
             b"content-length: %d\r\n\r\n" % len(body)]
    return b"".join(head) + body


def reply_408(timeout: float, default_headers: List[Tuple[bytes, bytes]]) -> bytes:
    return reply(b"408 Request Timeout",
                 f"request headers not complete within {timeout:g}s (HEADER_READ_TIMEOUT); "
                 "expected the request line and every header sooner", default_headers)


def reply_431(limit: int, default_headers: List[Tuple[bytes, bytes]]) -> bytes:
    """Worded as the app's own 431 (``platforms.asgi``, headers over ``MAX_HEADER_BYTES``)."""
    size = f"{limit >> 10} KiB" if limit % 1024 == 0 else f"{limit} bytes"
    return reply(b"431 Request Header Fields Too Large",
                 f"request line and headers over {size}; expected a shorter URL or fewer or "
                 "shorter headers", default_headers)


class HeadGuard(asyncio.Protocol):
    """What both wrapped protocols share: one timer for the head being read, if any, and the
    count of its bytes; ``_reading_head`` says whether the bytes arriving are a head's."""

    head_timeout = 0.0  # set by ``wrap``
    head_limit = 0  # likewise (0: no cap)
    _head_timer: Optional[asyncio.TimerHandle] = None
    _head_bytes = 0  # of the head being read, as fed to the parser
    _refused = False  # over the cap: nothing more is read from this connection

    def _reading_head(self) -> bool:
        raise NotImplementedError

    def _head_start(self) -> None:
        if self._head_timer is None and self.head_timeout > 0:
            loop = getattr(self, "loop", None) or asyncio.get_event_loop()
            self._head_timer = loop.call_later(self.head_timeout, self._head_expired)

    def _head_stop(self) -> None:
        """The head is in (or the connection gone): its timer and its count end."""
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, make_reply: Callable[[List[Tuple[bytes, bytes]]], bytes]) -> bool:
        """``make_reply(default_headers)`` written and the connection closed; False (nothing
        written) while a response is still being made for a request before this head: the
        connection closes after it, as uvicorn's shutdown() does."""
        transport = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return False
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not getattr(cycle, "response_complete", True):
            cycle.keep_alive = False
            return False
        state = getattr(self, "server_state", None)
        transport.write(make_reply(getattr(state, "default_headers", [])))
        transport.close()
        return True

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._refuse(lambda headers: reply_408(self.head_timeout, headers)):
            log.debug("%s: request head not complete within %gs; 408",
                      getattr(self, "client", None), self.head_timeout)

    def _head_too_large(self) -> None:
        self._refused = True
        self._head_stop()
        if self._refuse(lambda headers: reply_431(self.head_limit, headers)):
            log.debug("%s: request head over %d bytes; 431", getattr(self, "client", None),
                      self.head_limit)
        else:  # behind a response: read no more until it ends and the connection closes
            flow = getattr(self, "flow", None)
            if flow is not None:
                flow.pause_reading()

    def data_received(self, data: bytes) -> None:
        """``data`` to the parser, a head's bytes counted as they go: past ``head_limit`` the
        rest is neither parsed nor kept.  A read that ends a head and goes on (a body, or the
        next request's head) is fed up to the cap, then the rest as what it turned out to be."""
        while not self._refused and self.head_limit > 0 and self._reading_head():
            room = self.head_limit - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                break
            if room <= 0:
                self._head_too_large()
                return
            self._head_bytes += room  # reset to 0 by the parser if the head ends in here
            super().data_received(data[:room])
            data = data[room:]
            transport = getattr(self, "transport", None)
            if transport is None or transport.is_closing():  # uvicorn's 400, say
                return
        if self._refused:
            return
        super().data_received(data)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_start()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._head_stop()
        super().connection_lost(exc)


class HttptoolsHeadGuard(HeadGuard):
    """httptools' parser calls back at a request's first byte, at the end of its head and at
    the end of its body."""

    _in_body = False

    def _reading_head(self) -> bool:
        return not self._in_body

    def on_message_begin(self) -> None:
        self._head_start()
        super().on_message_begin()  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        self._head_stop()
        self._in_body = True
        super().on_headers_complete()  # type: ignore[misc]

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()  # type: ignore[misc]


class H11HeadGuard(HeadGuard):
    """h11's connection says whether it waits for a head: ``their_state`` is IDLE until a
    request's head is parsed (and again once both sides are done with it).

    h11 keeps its own bound on an incomplete head, uvicorn's ``h11_max_incomplete_event_size``
    (16 KiB unless set), checked only when a read leaves the head incomplete: a head over it
    that arrives in more than one read was a bare 400, so the app's 64 KiB limit and its 431
    held only for heads that came in one read.  Where that setting is left unset, h11's bound
    is the cap, which is counted first and answered with its 431."""

    h11: Any = None  # the h11 module, set by ``wrap``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = getattr(self, "config", None)
        if self.head_limit > 0 and getattr(config, "h11_max_incomplete_event_size", None) is None:
            self.conn = self.h11.Connection(self.h11.SERVER,
                                            max_incomplete_event_size=self.head_limit)

    def _awaiting_head(self) -> bool:
        conn = getattr(self, "conn", None)
        return conn is not None and getattr(conn, "their_state", None) is self.h11.IDLE

    _reading_head = _awaiting_head

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


def wrap(base: Any, timeout: float, limit: int = MAX_HEAD_BYTES) -> Optional[Any]:
    """``base`` (uvicorn's httptools or h11 protocol class) with a ``timeout`` on each request
    head and a ``limit`` on its bytes; None when both are 0 or ``base`` is neither protocol
    as we know it."""
    timeout, limit = max(float(timeout), 0.0), max(int(limit), 0)
    if not (timeout or limit):
        return None
    attrs: Dict[str, Any] = {"head_timeout": timeout, "head_limit": limit}
    if all(callable(getattr(base, m, None)) for m in
           ("on_message_begin", "on_headers_complete", "on_message_complete", "connection_made",
            "connection_lost", "data_received")):
        mixin: Any = HttptoolsHeadGuard
    elif base.__module__.endswith("h11_impl") and callable(getattr(base, "data_received", None)):
        try:
            import h11
        except ImportError:
            return None
        mixin, attrs["h11"] = H11HeadGuard, h11
    else:
        return None
    return type(base.__name__ + "HeadGuard", (mixin, base), attrs)


def protocol_class(timeout: float, limit: int = MAX_HEAD_BYTES) -> Optional[Any]:
    """uvicorn's ``http="auto"`` protocol with the head deadline and byte cap, or None."""
    try:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol
    except ImportError:
        return None
    return wrap(AutoHTTPProtocol, timeout, limit)


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
    class HeadGuardWorker(BaseWorker):  # type: ignore[misc,valid-type]
        """uvicorn's worker with ``protocol_class(HEADER_READ_TIMEOUT)`` (and the byte cap) as
        its protocol, chosen in each worker process as it starts (uvicorn's own where there
        is none)."""

        CONFIG_KWARGS: Dict[str, Any]  # uvicorn's: what its Config is built with

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            http = protocol_class(header_read_timeout(os.environ))
            if http is not None:
                self.CONFIG_KWARGS = {**self.CONFIG_KWARGS, "http": http}
            super().__init__(*args, **kwargs)


__all__ = ["UVICORN_WORKERS", "base_worker", "protocol_class", "reply", "reply_408", "reply_431",
           "wrap"]
