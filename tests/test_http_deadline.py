"""http_deadline, fast lane: which uvicorn protocols get a head deadline, and the deadline on a
mock transport (no socket; ``test_header_deadline`` runs it over real ones)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

import pytest

pytest.importorskip("uvicorn")

from uvicorn.config import Config
from uvicorn.server import ServerState

from tfserverless.http_deadline import protocol_class, wrap

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
            timeout: float = 0.05) -> Any:
    config = Config(app=app, lifespan="off", log_config=None)
    cls = wrap(base(impl), timeout)
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


def test_unknown_protocols_and_0_get_no_deadline() -> None:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    assert wrap(asyncio.Protocol, 1.0) is None  # neither httptools' nor h11's: left as it is
    assert wrap(base("h11"), 0) is None and protocol_class(0) is None
    assert issubclass(protocol_class(1.0), AutoHTTPProtocol)


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


def test_a_pipelined_head_stalled_behind_a_response_closes_after_it() -> None:
    """httptools reads a pipelined head while the response before it is still being made: at
    the deadline nothing is written into that response; the connection closes after it."""
    loop = asyncio.new_event_loop()
    try:
        async def event() -> asyncio.Event:  # made in the loop (bound to it before 3.10)
            return asyncio.Event()

        gate = loop.run_until_complete(event())

        async def slow(scope: Dict[str, Any], receive: Any, send: Any) -> None:
            await hello(scope, receive, send, gate)

        proto = connect("httptools", loop, slow)
        proto.data_received(REQUEST + PARTIAL)
        loop.run_until_complete(asyncio.sleep(0.3))  # past the second head's deadline
        assert proto.transport.out == b"" and not proto.transport.closed
        gate.set()
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    out = proto.transport.out
    assert out.startswith(b"HTTP/1.1 200 ") and b"408" not in out and proto.transport.closed
