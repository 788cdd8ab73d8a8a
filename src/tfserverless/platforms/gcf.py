"""Google functions-framework (local runs, Cloud Functions gen2, Cloud Run).

functions-framework >= 3.9 serves ``async`` functions registered with
``functions_framework.aio.http`` over ASGI (gunicorn + uvicorn, httptools): its per-request
cost is a fraction of the Flask (WSGI) server's, so that is what ``predict`` uses wherever it
is available.  Older functions-framework releases (the Python 3.7 processors) get the Flask
handler; ``predict_flask`` is that handler on any release.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, cast
from urllib.parse import parse_qsl

from ..errors import ClientGone, HeadersTooLarge, RequestTimeout, TFServerlessError
from ..messages import Request, error_response
from ..service import Service
from . import body_in_flight, declared_length, read_body

FlaskHandler = Callable[[Any], Tuple[bytes, int, Dict[str, str]]]
AsgiHandler = Callable[[Any], Awaitable[Any]]


def to_request(flask_request: Any, limit: int) -> Request:
    declared = flask_request.content_length or 0
    return Request(
        flask_request.method,
        flask_request.path,
        dict(flask_request.headers),
        read_body(flask_request.stream, declared, limit),
        query=flask_request.args.to_dict(),
        content_length=declared,
    )


MAX_HEADER_BYTES = 64 << 10  # request headers past this are a 431


async def to_request_async(scope: Dict[str, Any], receive: Callable[[], Awaitable[Dict[str, Any]]],
                           limit: int, *, timeout: float = 0.0) -> Request:
    """An ASGI request -> ``Request``, reading at most ``limit + 1`` body bytes, the whole
    body within ``timeout`` seconds (0: no limit) or a 408; headers over 64 KiB are a 431."""
    raw = scope["headers"]
    if sum(len(k) + len(v) for k, v in raw) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"request headers over {MAX_HEADER_BYTES >> 10} KiB; expected "
                              "fewer or shorter headers")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    declared = declared_length(headers.get("content-length"))
    chunks = []
    if declared <= limit:
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
    query = scope.get("query_string") or b""
    return Request(
        scope["method"],
        scope["path"],
        headers,
        b"".join(chunks),
        query=dict(parse_qsl(query.decode("latin-1"))) if query else None,
        content_length=declared,
    )


#: set in the request's task when its client left mid-response (see ``Reply``)
_CLIENT_LEFT: contextvars.ContextVar[bool] = contextvars.ContextVar("client_left", default=False)


class _QuietWhenClientLeft(logging.Filter):
    """Drops uvicorn's log records about a request whose client left mid-response (uvicorn
    logs them from that request's own task, so it sees the flag); every other record stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _CLIENT_LEFT.get()


async def _disconnect(receive: Callable[[], Awaitable[Dict[str, Any]]]) -> None:
    """Completes when the client disconnects (what is left of an unread body is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def make_handlers(service: Service) -> Tuple[Any, FlaskHandler]:
    """``(predict, predict_flask)``.  ``predict`` is the ASGI handler when this process is
    functions-framework with an ASGI mode, else the Flask one.

    The model loads (and warms up) in each worker right after gunicorn forks it, never in
    the master, so no TensorFlow state crosses a fork."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=service.holder.start)
    if "functions_framework" in sys.modules:
        # functions-framework's Flask server reads THREADS when it builds gunicorn's options,
        # after this module is imported: size it to the queue as EAS does (workers + queue),
        # plus threads that /healthz can always have
        cfg = service.config
        os.environ.setdefault("THREADS", str(service.admission.limits.workers
                                             + cfg.rpc_max_queue_size + 4))
        # and WORKERS, the processes per instance (each loads its own model copy)
        os.environ.setdefault("WORKERS", str(cfg.workers))
    flask_handler = make_flask_handler(service)
    return make_asgi_handler(service) or flask_handler, flask_handler


def make_flask_handler(service: Service) -> FlaskHandler:
    limit = service.config.max_body_bytes

    def predict(request: Any) -> Tuple[bytes, int, Dict[str, str]]:
        try:
            with body_in_flight(service, request.content_length or 0):
                resp = service.handle(to_request(request, limit))
        except TFServerlessError as e:  # 450: too many bytes in flight
            resp = error_response(e)
        return resp.body, resp.status, resp.headers

    return predict


def make_asgi_handler(service: Service) -> Optional[AsgiHandler]:
    """The ``async`` target, registered with ``functions_framework.aio.http``; None outside
    functions-framework (Lambda and FC never pay for its imports) or before its 3.9."""
    if "functions_framework" not in sys.modules:
        return None
    try:
        # only under functions-framework, and only releases with an ASGI mode have these
        from functions_framework import aio
        from starlette.responses import Response as StarletteResponse
    except ImportError:
        return None
    limit = service.config.max_body_bytes
    timeout = service.config.body_read_timeout
    admission = service.admission

    class Reply(StarletteResponse):  # type: ignore[misc, valid-type]
        """A response whose client may be gone: uvicorn writes pipelined replies to a
        transport a client reset meanwhile, and uvloop raises; that is a client leaving, not
        an error worth two tracebacks a request."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            except (ConnectionError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and "closed" not in str(e):
                    raise
                _CLIENT_LEFT.set(True)  # uvicorn's "returned without completing" is this

    logging.getLogger("uvicorn.error").addFilter(_QuietWhenClientLeft())

    async def predict(request: Any) -> Any:
        scope, receive = request.scope, request.receive
        watched: List[asyncio.Task[None]] = []

        def watch() -> asyncio.Task[None]:  # only for requests that must wait
            if not watched:
                watched.append(asyncio.ensure_future(_disconnect(receive)))
            return watched[0]

        declared = 0
        for k, v in scope["headers"]:
            if k == b"content-length":
                declared = min(declared_length(v), limit + 1)
        try:
            admission.reserve_bytes(declared)
            try:
                req = await to_request_async(scope, receive, limit, timeout=timeout)
                resp = await service.handle_async(req, watch)
            finally:
                admission.release_bytes(declared)
        except ClientGone:
            return Reply(b"", 499)  # nobody reads it; nothing to log
        except TFServerlessError as e:  # 450 (bytes in flight), 408 or 431 before the service
            resp = error_response(e)
        finally:
            for task in watched:
                task.cancel()
        return Reply(resp.body, resp.status, resp.headers)

    return cast(AsgiHandler, aio.http(predict))
