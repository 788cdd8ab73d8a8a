"""ASGI: one HTTP request scope -> ``Request`` -> ``Service.handle_async`` -> ``Response``.

``answer`` is shared by both ASGI entries: functions-framework's (``gcf``, a Starlette app
around our function) and ``make_app``, a bare ASGI application that gunicorn's uvicorn worker
serves with nothing in between (``tfserverless serve``, ``make serve``, the Cloud Run image):
no router, middleware or request object per request, which is most of what a prediction of a
small model costs over HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional
from urllib.parse import parse_qsl

from ..config import MAX_HEADER_BYTES
from ..errors import ClientGone, HeadersTooLarge, RequestTimeout, TFServerlessError
from ..messages import Request, Response
from ..serving.service import Service
from . import admit_head, declared_length
from . import grpc as grpc_door

Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]
App = Callable[[Dict[str, Any], Receive, Send], Awaitable[None]]

log = logging.getLogger("tfserverless")


#: the scope extension that marks a warm-up replay (only ``replay`` sets it: a server builds
#: every client's scope itself)
WARMUP = "tfserverless.warmup"
#: times each warm-up request goes through the server: the first finds no estimate of the
#: predict's cost and runs in a thread, the next on the loop, where a fast model's traffic runs
PATH_REPLAYS = 3
#: seconds ``warm_path`` waits at a time for a load still running (a wait ends as the load
#: does; ``MODEL_LOAD_TIMEOUT`` is what a request waits, 0 for none, not an interval to poll)
LOAD_POLL_SECONDS = 60.0
#: seconds a stopping worker gives the gRPC calls in flight
GRPC_STOP_GRACE = 5.0


def request_head(scope: Dict[str, Any]) -> Request:
    """An ASGI request's method, path, query and headers as a ``Request`` with no body yet;
    headers over 64 KiB are a 431."""
    raw = scope["headers"]
    if sum(len(k) + len(v) for k, v in raw) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"request headers over {MAX_HEADER_BYTES >> 10} KiB; expected "
                              "fewer or shorter headers")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    if len(headers) < len(raw):  # a repeated field is one, its values joined (RFC 9110 5.3)
        joined: Dict[str, List[str]] = {}
        for k, v in raw:
            joined.setdefault(k.decode("latin-1"), []).append(v.decode("latin-1"))
        headers = {k: ", ".join(v) for k, v in joined.items()}
    query = scope.get("query_string") or b""
    return Request(scope["method"], scope["path"], headers,
                   query=dict(parse_qsl(query.decode("latin-1"))) if query else None,
                   content_length=declared_length(headers.get("content-length")),
                   warmup=WARMUP in (scope.get("extensions") or ()))


async def read_body_async(receive: Receive, declared: int, limit: int, *, timeout: float = 0.0,
                          count: Optional[Callable[[int], None]] = None) -> bytes:
    """At most ``limit + 1`` body bytes (nothing when ``declared`` is already over), the whole
    body within ``timeout`` seconds (0: no limit) or a 408; ``count(n)`` is told of each chunk
    as it arrives (bytes in flight: it may refuse with a 450)."""
    if declared > limit:
        return b""
    chunks = []
    # one timer for the whole body (wait_for around each receive() costs a task a call)
    fired: List[bool] = []
    timer = None
    if timeout > 0:
        task = asyncio.current_task()

        def expire() -> None:
            fired.append(True)
            if task is not None:
                task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
    size, more = 0, True
    try:
        while more and size <= limit:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                raise ClientGone("client disconnected while sending the body")
            chunk = message.get("body", b"")
            if count is not None and chunk:
                count(len(chunk))
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
    except asyncio.CancelledError:
        if not fired:
            raise
        raise RequestTimeout(f"request body not complete within {timeout:g}s "
                             f"(BODY_READ_TIMEOUT); got {size} of {declared or '?'} "
                             "bytes") from None
    finally:
        if timer is not None:
            timer.cancel()
    return b"".join(chunks)


#: set in the request's task when its client left mid-response (see ``Reply``)
CLIENT_LEFT: contextvars.ContextVar[bool] = contextvars.ContextVar("client_left", default=False)


class QuietWhenClientLeft(logging.Filter):
    """Drops uvicorn's log records about a request whose client left mid-response (uvicorn
    logs them from that request's own task, so it sees the flag); every other record stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not CLIENT_LEFT.get()


async def _disconnect(receive: Receive) -> None:
    """Completes when the client disconnects (what is left of an unread body is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def peer(scope: Dict[str, Any]) -> str:
    """The client's address (bytes in flight are bounded per address)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


async def answer(service: Service, scope: Dict[str, Any], receive: Receive) -> Optional[Response]:
    """The reply to one HTTP scope; None when the client left (nobody to answer).

    Routed and authorised on its headers first: a client without the token is answered
    before its body is read and never holds bytes in flight.  The body's bytes are counted
    as they arrive (what a client declares costs nothing), per client address too."""
    cfg = service.config
    admission = service.admission
    watched: List[asyncio.Task[None]] = []

    def watch() -> asyncio.Task[None]:  # only for requests that must wait
        if not watched:
            watched.append(asyncio.ensure_future(_disconnect(receive)))
        return watched[0]

    try:
        req = request_head(scope)
    except TFServerlessError as e:  # 431
        return service.route_error(Request(scope["method"], scope["path"]), e)
    admitted = admit_head(service, req, peer(scope))
    if isinstance(admitted, Response):
        return admitted
    routed, held = admitted
    try:
        declared = req.content_length or 0
        req.body = await read_body_async(
            receive, declared, cfg.max_body_bytes, timeout=cfg.body_read_timeout,
            count=lambda n: admission.reserve_bytes(held, n))
        return await service.handle_async(req, watch, routed, held)
    except ClientGone:
        return None
    except TFServerlessError as e:  # 450 (bytes in flight) or 408 while reading the body
        return service.route_error(req, e)
    finally:
        admission.release_bytes(held)
        for task in watched:
            task.cancel()


async def replay(app: App, req: Request) -> int:
    """Send ``req`` through ``app`` in-process, as the server would a client's: the status."""
    scope: Dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": req.method, "path": req.path, "raw_path": req.path.encode("latin-1"),
             "query_string": b"", "client": None, "server": None, "extensions": {WARMUP: {}},
             "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()]}
    sent: List[Dict[str, Any]] = []
    unread = [req.body]

    async def receive() -> Dict[str, Any]:
        if unread:
            return {"type": "http.request", "body": unread.pop(), "more_body": False}
        await asyncio.get_running_loop().create_future()  # a client that stays: never answers
        raise AssertionError("unreachable")

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]) if sent else 0


async def warm_path(service: Service, app: App) -> None:
    """Once the model is loaded and warmed up, its warm-up requests go through ``app`` on this
    worker's own event loop, so the first client request finds the whole path warm (the
    predict threads, the inline estimate, first-use costs); readiness waits for it."""
    holder = service.holder
    holder.hold()
    try:
        while not await holder.wait_async(LOAD_POLL_SECONDS):
            if holder.state != "loading":
                return  # failed: readiness says so; a later load warms the model only
        t0 = time.perf_counter()
        requests = service.warmup_requests()
        for req in requests * PATH_REPLAYS:
            status = await replay(app, req)
            if status != 200:
                log.warning("warm-up through the server: POST / answered %d", status)
        if requests:
            log.info("warm-up through the server: %d request(s) in %.1f ms", len(requests),
                     (time.perf_counter() - t0) * 1e3)
    finally:
        holder.release()


def make_app(service: Service) -> App:
    """The bare ASGI application (``main:app``).  At its server's lifespan startup it starts
    the model's load and, once loaded, replays the warm-up through itself (``warm_path``)."""
    logging.getLogger("uvicorn.error").addFilter(QuietWhenClientLeft())
    tasks: List[asyncio.Task[None]] = []
    servers: List[Any] = []  # the worker's gRPC server, if GRPC_PORT

    async def app(scope: Dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":  # the model loads after the fork, in each worker
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.append(asyncio.ensure_future(warm_path(service, app)))
                    cfg = service.config
                    if cfg.grpc_port:  # gRPC beside HTTP, in this worker's loop
                        try:
                            servers.append(await grpc_door.start(service, cfg.grpc_host,
                                                                 cfg.grpc_port))
                        except Exception as e:  # the worker cannot serve what was asked
                            await send({"type": "lifespan.startup.failed",
                                        "message": f"gRPC on port {cfg.grpc_port}: {e}"})
                            return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for server in servers:
                        await server.stop(GRPC_STOP_GRACE)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        resp = await answer(service, scope, receive)
        if resp is None:
            return
        body = b"" if scope["method"] == "HEAD" else resp.body
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in resp.headers.items()]
        headers.append((b"content-length", str(len(resp.body)).encode("latin-1")))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except (ConnectionError, RuntimeError) as e:  # the client reset meanwhile: it left
            if isinstance(e, RuntimeError) and "closed" not in str(e):
                raise
            CLIENT_LEFT.set(True)  # uvicorn's "returned without completing" is this

    return app


__all__ = ["CLIENT_LEFT", "WARMUP", "App", "QuietWhenClientLeft", "answer", "make_app", "peer",
           "read_body_async", "replay", "request_head", "warm_path"]
