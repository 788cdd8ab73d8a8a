"""Alibaba Cloud Function Compute.

* FC 3.0 built-in runtimes, HTTP trigger: ``handler(event, context)`` with a JSON event
  (``rawPath``, ``headers``, ``queryParameters``, ``body``, ``isBase64Encoded``,
  ``requestContext.http.method``), answered with ``statusCode``/``headers``/``body``.
* FC 2.0 HTTP functions and custom runtimes: ``handler(environ, start_response)`` (WSGI).
* ``initializer(context)``: loads and warms up the model, with the temporary credentials FC
  passes in ``context.credentials`` for ``oss://`` models.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict

from ..errors import BadRequest
from ..messages import PayloadLimit, Request, Response, error_response
from ..serving.service import Service
from . import event_body, event_reply_body, from_event, load_in_init, reply_within
from .wsgi import is_wsgi_call, make_app

# FC's synchronous invocation payload cap
FC_PAYLOAD = PayloadLimit("Function Compute's 32 MB synchronous payload", 32 * 1024 * 1024 * 3 // 4)
#: the event function's reply as FC takes it back (JSON): escaped text or base64 can pass the
#: cap on the body's own bytes and still be over this
FC_REPLY = PayloadLimit("Function Compute's 32 MB synchronous payload", 32 * 1024 * 1024)


def decode_event(event: Any) -> Request:
    try:
        data = json.loads(event) if isinstance(event, (bytes, bytearray, str)) else event
    except ValueError:
        raise BadRequest("the FC event is not JSON; expected an HTTP trigger event") from None
    if not isinstance(data, dict) or "requestContext" not in data:
        raise BadRequest("unsupported FC event; expected an HTTP trigger event with "
                         "rawPath and requestContext")
    http = (data.get("requestContext") or {}).get("http") or {}
    raw = event_body(data.get("body"), data.get("isBase64Encoded"))
    headers = {str(k): str(v) for k, v in (data.get("headers") or {}).items()}
    query = {str(k): str(v) for k, v in (data.get("queryParameters") or {}).items()}
    return Request(http.get("method", "GET"), data.get("rawPath") or http.get("path") or "/",
                   headers, raw, query=query, payload_limit=FC_PAYLOAD)


def encode_response(resp: Response) -> Dict[str, Any]:
    body, b64 = event_reply_body(resp)
    return {"statusCode": resp.status, "headers": dict(resp.headers), "body": body,
            "isBase64Encoded": b64}


def make_handler(service: Service) -> Callable[[Any, Any], Any]:
    wsgi_app = make_app(service, FC_PAYLOAD)

    def handler(event: Any, context: Any) -> Any:
        if is_wsgi_call(event, context):  # FC 2.0 / custom runtime: (environ, start_response)
            return wsgi_app(event, context)
        try:
            req = from_event(decode_event, event, "FC HTTP trigger")
        except BadRequest as e:
            return encode_response(error_response(e))
        return reply_within(encode_response, service.handle(req), FC_REPLY, req.protocol)

    return handler


class _HeaderContext:
    """The initializer's context for custom containers, where FC passes the role's temporary
    credentials as ``x-fc-*`` headers of ``POST /initialize``."""

    def __init__(self, environ: Dict[str, Any]) -> None:
        class Credentials:
            access_key_id = environ.get("HTTP_X_FC_ACCESS_KEY_ID", "")
            access_key_secret = environ.get("HTTP_X_FC_ACCESS_KEY_SECRET", "")
            security_token = environ.get("HTTP_X_FC_SECURITY_TOKEN", "")

        self.credentials = Credentials()
        self.request_id = environ.get("HTTP_X_FC_REQUEST_ID", "")


def make_container_app(service: Service) -> Callable[[Dict[str, Any], Any], Any]:
    """WSGI app for FC custom containers: ``POST /initialize`` runs the initializer (FC's
    lifecycle hook for containers); everything else is ordinary traffic."""
    wsgi_app = make_app(service, FC_PAYLOAD)
    initializer = make_initializer(service)

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/initialize" and environ.get("REQUEST_METHOD") == "POST":
            initializer(_HeaderContext(environ))
            ok = service.holder.model is not None or service.holder.state == "loading"
            body = (b"initialized\n" if ok else
                    f"initializer: model not loaded: {service.holder.error}\n".encode())
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return wsgi_app(environ, start_response)

    return app


def make_initializer(service: Service) -> Callable[[Any], None]:
    def initializer(context: Any) -> None:
        creds = getattr(context, "credentials", None)
        env = service.config.environ
        for key, attr in (("ALIBABA_CLOUD_ACCESS_KEY_ID", "access_key_id"),
                          ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "access_key_secret"),
                          ("ALIBABA_CLOUD_SECURITY_TOKEN", "security_token")):
            value = getattr(creds, attr, None) if creds is not None else None
            if value:
                env[key] = str(value)  # the role's temporary keys win over stale ones
        load_in_init(service, "FC initializer")

    return initializer
