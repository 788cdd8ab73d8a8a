"""The transport-agnostic HTTP types every adapter speaks: ``Request`` in, ``Response`` out."""

from __future__ import annotations

import json
import zlib
from typing import Any, Dict, Mapping, Optional

from .errors import BadRequest, PayloadTooLarge, TFServerlessError, UnsupportedMediaType

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

    __slots__ = ("body", "content_length", "headers", "infer", "method", "path",
                 "payload_limit", "protocol", "query", "timeout", "warmup")

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
        warmup: bool = False,
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
        # the client ecosystem its route belongs to (routing sets it): errors take its form
        self.protocol = ""
        # a warm-up replay through the serving path (not counted in /metrics)
        self.warmup = warmup
        # seconds the client gives the call (a gRPC deadline), if it said; RPC_KEEPALIVE
        # bounds it either way
        self.timeout: Optional[float] = None
        # a prediction (admitted to the model), as /metrics and V2's statistics count them
        self.infer = False


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


#: Content-Encoding -> zlib window bits (HTTP's "deflate" is zlib-wrapped)
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def check_size(req: Request, limit: int, name: str) -> None:
    """A body (as declared before it is read, or as read) over ``limit`` bytes is a 413; so
    is one over the platform's own payload cap."""
    n = max(len(req.body), req.content_length or 0)
    if n > limit:
        raise PayloadTooLarge(f"request body of {n} bytes is over the limit of {limit} bytes "
                              f"({name})")
    cap = req.payload_limit
    if cap is not None and n > cap.nbytes:
        raise PayloadTooLarge(f"request body of {n} bytes is over {cap.name}'s limit of "
                              f"{cap.nbytes} bytes; send smaller batches")


def _coding(req: Request) -> str:
    return req.headers.get("content-encoding", "").strip().lower()


def is_encoded(req: Request) -> bool:
    """Whether the body has a ``Content-Encoding`` to undo."""
    return _coding(req) not in ("", "identity")


def check_coding(req: Request) -> None:
    """A ``Content-Encoding`` we cannot undo is a 415 from the headers, before the body."""
    coding = _coding(req)
    if coding not in ("", "identity") and coding not in _CODINGS:
        raise UnsupportedMediaType(f"Content-Encoding {coding[:40]!r} is not supported; expected "
                                   "gzip, deflate or none")


def inflates_to_nothing(req: Request) -> bool:
    """Whether a compressed body holds no bytes at all (EAS: an empty body asks for the
    schema, compressed or not); inflates one byte at most."""
    wbits = _CODINGS.get(_coding(req))
    if wbits is None:
        return False
    d = zlib.decompressobj(wbits)
    try:
        return not d.decompress(req.body, 1) and d.eof
    except zlib.error:
        return False  # decoded_body says what is wrong with it


def decoded_body(req: Request, limit: int, name: str = "MAX_BODY_BYTES") -> bytes:
    """The body with its ``Content-Encoding`` undone (gzip, with any number of members as
    RFC 1952 allows, or deflate, as ``tritonclient`` sends with
    ``request_compression_algorithm``), never inflating past ``limit`` bytes (the route's own
    limit, ``name`` in the 413): memory is bounded before anything is allocated for the
    output."""
    coding = _coding(req)
    if coding in ("", "identity"):
        return req.body
    check_coding(req)
    wbits = _CODINGS[coding]
    out, data = [], req.body
    size = 0
    while True:
        d = zlib.decompressobj(wbits)
        try:
            part = d.decompress(data, limit + 1 - size)
        except zlib.error as e:
            raise BadRequest(f"body is not valid {coding} data ({e})") from None
        size += len(part)
        out.append(part)
        if size > limit:
            raise PayloadTooLarge(f"request body inflates past the limit of {limit} bytes "
                                  f"({name})")
        if not d.eof or d.unconsumed_tail:
            raise BadRequest(f"{coding} body is truncated or has bytes after its end")
        data = d.unused_data
        if not data or wbits != _CODINGS["gzip"]:
            break
    if data:
        raise BadRequest(f"{coding} body is truncated or has bytes after its end")
    return b"".join(out)


#: protocols whose clients read errors as ``{"error": "..."}`` (TF Serving REST, V2)
JSON_ERRORS = frozenset(("tfserving", "v2", "sagemaker"))


def error_response(err: TFServerlessError, protocol: str = "") -> Response:
    """The one place an error becomes a reply: its status, one line of text (or that line
    as ``{"error": ...}`` for the JSON protocols)."""
    if protocol in JSON_ERRORS:
        resp = json_response(err.status, {"error": err.message})
    else:
        resp = Response(err.status, (err.message + "\n").encode("utf-8"),
                        {"Content-Type": "text/plain; charset=utf-8"})
    resp.headers.update(err.headers)
    return resp
