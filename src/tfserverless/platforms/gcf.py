"""Google functions-framework (local runs, Cloud Functions gen2, Cloud Run)."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Tuple

from ..service import Request, Service
from . import read_body


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


def make_handler(service: Service) -> Callable[[Any], Tuple[bytes, int, Dict[str, str]]]:
    """The ``predict`` target.  The model loads (and warms up) in each worker right after
    gunicorn forks it, never in the master, so no TensorFlow state crosses a fork."""
    limit = service.config.max_body_bytes
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=service.holder.start)

    def predict(request: Any) -> Tuple[bytes, int, Dict[str, str]]:
        resp = service.handle(to_request(request, limit))
        return resp.body, resp.status, resp.headers

    return predict
