"""Plain WSGI: Function Compute 2.0 HTTP functions and custom runtimes
(``handler(environ, start_response)``), or any WSGI server."""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import Any, Callable, Dict, Iterable, List, Tuple
from urllib.parse import parse_qsl

from ..messages import PayloadLimit, Request
from ..serving.service import Service
from . import declared_length, handle_sync

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]


def is_wsgi_call(first: Any, second: Any) -> bool:
    return isinstance(first, dict) and "REQUEST_METHOD" in first and callable(second)


def to_request(environ: Dict[str, Any], payload_limit: PayloadLimit | None = None) -> Request:
    """The request's method, path, query and headers; its body stays in ``wsgi.input``."""
    headers = {k[5:].replace("_", "-"): str(v) for k, v in environ.items()
               if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    declared = declared_length(environ.get("CONTENT_LENGTH"))
    if declared:
        headers["Content-Length"] = str(declared)
    return Request(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO") or "/",
                   headers, query=dict(parse_qsl(environ.get("QUERY_STRING", ""))),
                   content_length=declared, payload_limit=payload_limit)


def _input(environ: Dict[str, Any]) -> Any:
    # PEP 3333: without CONTENT_LENGTH the input may only be read when the server says it ends
    # (chunked bodies); reading a bare socket would wait forever
    if declared_length(environ.get("CONTENT_LENGTH")) or environ.get("wsgi.input_terminated"):
        return environ["wsgi.input"]
    return io.BytesIO()


def make_app(service: Service, payload_limit: PayloadLimit | None = None
             ) -> Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        resp = handle_sync(service, to_request(environ, payload_limit), _input(environ),
                           str(environ.get("REMOTE_ADDR") or ""))
        headers = dict(resp.headers)
        headers["Content-Length"] = str(len(resp.body))
        start_response(f"{resp.status} {HTTPStatus(resp.status).phrase}", list(headers.items()))
        return [resp.body]

    return app
