"""Google functions-framework (local runs, Cloud Functions gen2, Cloud Run).

functions-framework >= 3.9 serves ``async`` functions registered with
``functions_framework.aio.http`` over ASGI (gunicorn + uvicorn, httptools): its per-request
cost is a fraction of the Flask (WSGI) server's, so that is what ``predict`` uses wherever it
is available.  Older functions-framework releases (the Python 3.7 processors) get the Flask
handler; ``predict_flask`` is that handler on any release.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Awaitable, Callable, Optional, Tuple, cast

from ..messages import Request
from ..serving.service import Service
from . import handle_sync
from .asgi import CLIENT_LEFT, QuietWhenClientLeft, answer

FlaskHandler = Callable[[Any], Any]
AsgiHandler = Callable[[Any], Awaitable[Any]]


def to_request(flask_request: Any) -> Request:
    """The request's method, path, query and headers; its body stays in its stream."""
    return Request(flask_request.method, flask_request.path, dict(flask_request.headers),
                   query=flask_request.args.to_dict(),
                   content_length=flask_request.content_length or 0)


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
        # and WORKERS, the processes per instance (each loads its own model copy: as many as
        # fit the memory limit, as ``tfserverless serve`` starts)
        from ..sizing import workers_or_exit

        cfg.workers = workers_or_exit(cfg).workers  # WORKERS as set, else this (an empty one too)
        os.environ["WORKERS"] = str(cfg.workers)
    flask_handler = make_flask_handler(service)
    return make_asgi_handler(service) or flask_handler, flask_handler


def make_flask_handler(service: Service) -> FlaskHandler:
    flask_response: Optional[Any] = None
    if "flask" in sys.modules or "functions_framework" in sys.modules:
        from flask import Response as flask_response

    def predict(request: Any) -> Any:
        resp = handle_sync(service, to_request(request), request.stream,
                           str(request.remote_addr or ""))
        if flask_response is None:
            return resp.body, resp.status, resp.headers
        # a streamed reply: functions-framework reads a non-streamed request's whole body
        # after the handler (``read_request``: into memory, as long as declared), which would
        # undo every limit on a body we refused before reading it
        headers = dict(resp.headers, **{"Content-Length": str(len(resp.body))})
        return flask_response(iter((resp.body,)), resp.status, headers)

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
    class Reply(StarletteResponse):
        """A response whose client may be gone: uvicorn writes pipelined replies to a
        transport a client reset meanwhile, and uvloop raises; that is a client leaving, not
        an error worth two tracebacks a request."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            except (ConnectionError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and "closed" not in str(e):
                    raise
                CLIENT_LEFT.set(True)  # uvicorn's "returned without completing" is this

    logging.getLogger("uvicorn.error").addFilter(QuietWhenClientLeft())

    async def predict(request: Any) -> Any:
        resp = await answer(service, request.scope, request.receive)
        if resp is None:
            return Reply(b"", 499)  # the client left: nobody reads it, nothing to log
        return Reply(resp.body, resp.status, resp.headers)

    return cast(AsgiHandler, aio.http(predict))
