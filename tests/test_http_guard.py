"""http_guard, fast lane: which uvicorn protocols get a head deadline and byte cap, and both on
a mock transport (no socket; ``test_header_limits`` runs them over real ones)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("uvicorn")

from uvicorn.config import Config
from uvicorn.server import ServerState

from tfserverless.http_guard import protocol_class, wrap

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\nX-Stalled: "


def base(impl: str) -> Any:
    if impl == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    pytest.importorskip("httptools")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out, self.closed = b"", False

    def write(self, data: Any) -> None:
        self.out += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(impl: str, loop: asyncio.AbstractEventLoop, app: Any,
            timeout: float = 0.05, limit: int = 1 << 10) -> Any:
    config = Config(app=app, lifespan="off", log_config=None)
    cls = wrap(base(impl), timeout, limit)
    proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    proto.connection_made(Transport())
    return proto


async def hello(scope: Dict[str, Any], receive: Any, send: Any,
                gate: Optional[asyncio.Event] = None) -> None:
    if gate is not None:
        await gate.wait()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def sized(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    """200 with the length of the request's body and of its headers' values."""
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    body = b"%d %d" % (size, sum(len(v) for _, v in scope["headers"]))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def fed_to(impl: str, monkeypatch: Any) -> List[int]:
    """The bytes each ``data_received`` hands uvicorn's own protocol (its parser), as a list."""
    cls, fed = base(impl), []
    received = cls.data_received

    def counting(self: Any, data: bytes) -> None:
        fed.append(len(data))
        received(self, data)

    monkeypatch.setattr(cls, "data_received", counting)
    return fed


def head(size: int, path: bytes = b"/") -> bytes:
    """A GET whose request line and headers are ``size`` bytes."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def test_unknown_protocols_and_no_limits_are_not_wrapped() -> None:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    assert wrap(asyncio.Protocol, 1.0) is None  # neither httptools' nor h11's: left as it is
    assert wrap(base("h11"), 0, 0) is None  # no deadline and no byte cap: nothing to wrap
    assert wrap(base("h11"), 0) is not None  # HEADER_READ_TIMEOUT=0 leaves the byte cap
    assert issubclass(protocol_class(1.0), AutoHTTPProtocol)
    assert issubclass(protocol_class(0), AutoHTTPProtocol)


@pytest.mark.parametrize("impl", ["httptools", "h11"])
def test_a_stalled_head_is_408_and_a_complete_one_is_not(impl: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        stalled, served = connect(impl, loop, hello), connect(impl, loop, hello)
        stalled.data_received(PARTIAL)
        served.data_received(REQUEST)
        loop.run_until_complete(asyncio.sleep(0.3))
    finally:
        loop.close()
    assert stalled.transport.out.startswith(b"HTTP/1.1 408 ") and stalled.transport.closed
    assert b"within 0.05s (HEADER_READ_TIMEOUT)" in stalled.transport.out
    assert served.transport.out.startswith(b"HTTP/1.1 200 ") and not served.transport.closed


def behind_a_slow_response(data: bytes, wait: float, **kw: Any) -> bytes:
    """``data`` fed at once to httptools' guarded protocol whose app answers the first request
    only when let; asserts nothing was written after ``wait`` s; then lets it: the output."""
    loop = asyncio.new_event_loop()
    try:
        async def event() -> asyncio.Event:  # made in the loop (bound to it before 3.10)
            return asyncio.Event()

        gate = loop.run_until_complete(event())

        async def slow(scope: Dict[str, Any], receive: Any, send: Any) -> None:
            await hello(scope, receive, send, gate)

        proto = connect("httptools", loop, slow, **kw)
        proto.data_received(data)
        loop.run_until_complete(asyncio.sleep(wait))
        assert proto.transport.out == b"" and not proto.transport.closed
        gate.set()
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    assert proto.transport.closed
    return bytes(proto.transport.out)


def test_a_pipelined_head_stalled_behind_a_response_closes_after_it() -> None:
    """httptools reads a pipelined head while the response before it is still being made: at
    the deadline nothing is written into that response; the connection closes after it."""
    out = behind_a_slow_response(REQUEST + PARTIAL, 0.3)  # past the second head's deadline
    assert out.startswith(b"HTTP/1.1 200 ") and b"408" not in out


@pytest.mark.parametrize("impl", ["httptools", "h11"])
def test_an_endless_head_is_431_once_past_the_cap_and_read_no_further(
        impl: str, monkeypatch: Any) -> None:
    """No deadline here (0): the cap alone cuts it, before uvicorn's parser holds more."""
    fed = fed_to(impl, monkeypatch)
    loop = asyncio.new_event_loop()
    try:
        proto = connect(impl, loop, hello, timeout=0, limit=1 << 10)
        proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
        offered = 0
        while offered < 1 << 20 and not proto.transport.closed:
            proto.data_received(b"X-Pad: " + b"a" * 91 + b"\r\n")  # 100 bytes a line
            offered += 100
        proto.data_received(b"X-Pad: more\r\n" * 100)  # after the 431: dropped
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    out = proto.transport.out
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), out
    assert b"connection: close\r\n" in out and proto.transport.closed
    assert out.endswith(b"\r\n\r\nrequest line and headers over 1 KiB; expected a shorter URL "
                        b"or fewer or shorter headers\n")
    assert offered <= 1 << 10 and sum(fed) <= 1 << 10, (offered, fed)


@pytest.mark.parametrize("impl", ["httptools", "h11"])
def test_bodies_are_not_counted_and_each_head_has_its_own_cap(impl: str) -> None:
    """A body 20x the cap in the same read as its head; then heads of 0.9x the cap on one
    keep-alive connection, sent whole, pipelined in one read, and a byte at a time."""
    body = b"b" * (20 << 10)
    post = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    near = head(900)
    loop = asyncio.new_event_loop()
    try:
        proto = connect(impl, loop, sized, timeout=0, limit=1 << 10)
        run = loop.run_until_complete
        proto.data_received(post)
        run(asyncio.sleep(0.05))
        proto.data_received(near)
        run(asyncio.sleep(0.05))
        proto.data_received(near + near)
        run(asyncio.sleep(0.1))
        for i in range(len(near)):
            proto.data_received(near[i:i + 1])
        run(asyncio.sleep(0.05))
    finally:
        loop.close()
    out = proto.transport.out
    assert b"431" not in out and not proto.transport.closed, out
    assert out.count(b"HTTP/1.1 200 ") == 5, out
    assert out.count(b"\r\n\r\n20480 ") == 1 and out.count(b"\r\n\r\n0 ") == 4, out


def test_a_pipelined_head_past_the_cap_behind_a_response_closes_after_it() -> None:
    """httptools reads a pipelined head while the response before it is still being made:
    past the cap nothing is written into that response, nothing more is read, and the
    connection closes after it."""
    out = behind_a_slow_response(REQUEST + PARTIAL + b"a" * (4 << 10), 0.05, timeout=0,
                                 limit=1 << 10)
    assert out.startswith(b"HTTP/1.1 200 ") and b"431" not in out


def test_h11_takes_heads_up_to_the_cap_in_any_number_of_reads() -> None:
    """h11's own bound on an incomplete head (16 KiB in uvicorn) made a 40 KiB head that came
    in 4 KiB reads a bare 400; now the cap is the bound, and past it a 431."""
    served = head(40 << 10)
    loop = asyncio.new_event_loop()
    try:
        ok, over = (connect("h11", loop, sized, timeout=0, limit=64 << 10) for _ in range(2))
        for proto, request in ((ok, served), (over, head(80 << 10))):
            for i in range(0, len(request), 4096):
                if proto.transport.closed:  # a socket would read no more
                    break
                proto.data_received(request[i:i + 4096])
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    assert ok.transport.out.startswith(b"HTTP/1.1 200 "), ok.transport.out
    assert over.transport.out.startswith(b"HTTP/1.1 431 ") and over.transport.closed
