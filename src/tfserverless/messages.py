"""The transport-agnostic HTTP types every adapter speaks: ``Request`` in, ``Response`` out."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from .errors import TFServerlessError

GATEWAY_PREFIX = "/api/predict/"
PROTOBUF = "application/octet-stream"


class PayloadLimit:
    """A platform's synchronous payload cap, named in the 413 it causes."""

    __slots__ = ("name", "nbytes")

    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes


class Request:
    """An HTTP request as every platform can describe it (header names any case)."""

    __slots__ = ("body", "content_length", "headers", "method", "path", "payload_limit", "query")

    def __init__(
        self,
        method: str,
        path: str,
        headers: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        *,
        query: Optional[Mapping[str, str]] = None,
        content_length: Optional[int] = None,
        payload_limit: Optional[PayloadLimit] = None,
    ) -> None:
        self.method = method.upper()
        self.path = path or "/"
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        self.body = body
        self.query = dict(query or {})
        # what the client declared; lets adapters refuse a huge body before reading it
        self.content_length = content_length
        # the platform's own cap on request and response bodies (Lambda: 6 MB), if any
        self.payload_limit = payload_limit


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def is_binary(self) -> bool:
        return self.headers.get("Content-Type", "").startswith(PROTOBUF)

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes, {self.headers})"


def json_response(status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> Response:
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return Response(status, json.dumps(data, indent=1).encode() + b"\n", h)


def error_response(err: TFServerlessError) -> Response:
    """The one place an error becomes a reply: its status, one line of text."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    headers.update(err.headers)
    return Response(err.status, (err.message + "\n").encode("utf-8"), headers)
