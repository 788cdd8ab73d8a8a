"""Plain WSGI: Function Compute 2.0 HTTP functions and custom runtimes
(``handler(environ, start_response)``), or any WSGI server."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable, Dict, Iterable, List, Tuple
from urllib.parse import parse_qsl

from ..errors import TFServerlessError
from ..messages import PayloadLimit, Request, error_response
from ..service import Service
from . import body_in_flight, declared_length, read_body

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]


def is_wsgi_call(first: Any, second: Any) -> bool:
    return isinstance(first, dict) and "REQUEST_METHOD" in first and callable(second)


def to_request(environ: Dict[str, Any], limit: int,
               payload_limit: PayloadLimit | None = None) -> Request:
    headers = {k[5:].replace("_", "-"): str(v) for k, v in environ.items()
               if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    declared = declared_length(environ.get("CONTENT_LENGTH"))
    if declared:
        headers["Content-Length"] = str(declared)
    # PEP 3333: without CONTENT_LENGTH the input may only be read when the server says it ends
    # (chunked bodies); reading a bare socket would wait forever
    if declared or environ.get("wsgi.input_terminated"):
        body = read_body(environ["wsgi.input"], declared, limit)
    else:
        body = b""
    return Request(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO") or "/",
                   headers, body, query=dict(parse_qsl(environ.get("QUERY_STRING", ""))),
                   content_length=declared, payload_limit=payload_limit)


def make_app(service: Service, payload_limit: PayloadLimit | None = None
             ) -> Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]:
    limit = service.config.max_body_bytes

    def app(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            with body_in_flight(service, declared_length(environ.get("CONTENT_LENGTH"))):
                resp = service.handle(to_request(environ, limit, payload_limit))
        except TFServerlessError as e:  # 450: too many bytes in flight
            resp = error_response(e)
        headers = dict(resp.headers)
        headers["Content-Length"] = str(len(resp.body))
        start_response(f"{resp.status} {HTTPStatus(resp.status).phrase}", list(headers.items()))
        return [resp.body]

    return app
