"""Google functions-framework (local runs, Cloud Functions gen2, Cloud Run)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from ..service import Request, Service


def read_body(stream: Any, declared: int, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to know a body is too large, never more."""
    if declared > limit:
        return b""
    return bytes(stream.read(limit + 1))


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
    limit = service.config.max_body_bytes

    def predict(request: Any) -> Tuple[bytes, int, Dict[str, str]]:
        resp = service.handle(to_request(request, limit))
        return resp.body, resp.status, resp.headers

    return predict
