"""Google functions-framework (local runs, Cloud Functions gen2, Cloud Run).

functions-framework >= 3.9 serves ``async`` functions registered with
``functions_framework.aio.http`` over ASGI (gunicorn + uvicorn, httptools): its per-request
cost is a fraction of the Flask (WSGI) server's, so that is what ``predict`` uses wherever it
is available.  Older functions-framework releases (the Python 3.7 processors) get the Flask
handler; ``predict_flask`` is that handler on any release.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, cast
from urllib.parse import parse_qsl

from ..service import Request, Service
from . import declared_length, read_body

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


async def to_request_async(scope: Dict[str, Any], receive: Callable[[], Awaitable[Dict[str, Any]]],
                           limit: int) -> Request:
    """An ASGI request -> ``Request``, reading at most ``limit + 1`` body bytes."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    declared = declared_length(headers.get("content-length"))
    chunks = []
    if declared <= limit:
        size, more = 0, True
        while more and size <= limit:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
    query = scope.get("query_string") or b""
    return Request(
        scope["method"],
        scope["path"],
        headers,
        b"".join(chunks),
        query=dict(parse_qsl(query.decode("latin-1"))) if query else None,
        content_length=declared,
    )


def make_handlers(service: Service) -> Tuple[Any, FlaskHandler]:
    """``(predict, predict_flask)``.  ``predict`` is the ASGI handler when this process is
    functions-framework with an ASGI mode, else the Flask one.

    The model loads (and warms up) in each worker right after gunicorn forks it, never in
    the master, so no TensorFlow state crosses a fork."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=service.holder.start)
    flask_handler = make_flask_handler(service)
    return make_asgi_handler(service) or flask_handler, flask_handler


def make_flask_handler(service: Service) -> FlaskHandler:
    limit = service.config.max_body_bytes

    def predict(request: Any) -> Tuple[bytes, int, Dict[str, str]]:
        resp = service.handle(to_request(request, limit))
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

    async def predict(request: Any) -> Any:
        req = await to_request_async(request.scope, request.receive, limit)
        if service.runs_inline(req):
            resp = service.handle(req)  # cheaper than the hand-off to a thread would be
        else:
            resp = await asyncio.get_running_loop().run_in_executor(None, service.handle, req)
        return StarletteResponse(resp.body, resp.status, resp.headers)

    return cast(AsgiHandler, aio.http(predict))
