"""AWS Lambda: API Gateway REST (v1) and HTTP API (v2), Function URLs, ALB.

As in Mangum, each event source is a small class: ``infer(event)`` says whether an event is
its kind, ``decode`` makes the ``Request``, ``encode`` the reply; the first that infers wins.
Bodies are base64-decoded when flagged; binary (protobuf) replies are base64-encoded.  A reply
whose JSON (as the runtime client sends it) is over Lambda's 6 MB becomes our 413: Lambda would
refuse it with a 502, and the runtime client exits on the refusal.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable, Dict, List, Optional, Type
from urllib.parse import unquote_plus

from ..errors import BadRequest
from ..messages import PayloadLimit, Request, Response, error_response
from ..serving.service import Service
from . import event_body, event_reply_body, from_event, load_in_init, reply_within

# Lambda's synchronous invocation payload cap (request and response, after base64)
LAMBDA_PAYLOAD = PayloadLimit("AWS Lambda's 6 MB synchronous payload", 6 * 1024 * 1024 * 3 // 4)
#: the reply as Lambda takes it back: the handler's return value serialised to JSON.  A text
#: body under LAMBDA_PAYLOAD can still be over it once its quotes and backslashes are escaped
#: (TF Serving JSON of string tensors: 1.8x), a binary one once base64 and the envelope are added
LAMBDA_REPLY = PayloadLimit("AWS Lambda's 6 MB synchronous payload", 6 * 1024 * 1024)

Event = Dict[str, Any]


def _body(event: Event) -> bytes:
    return event_body(event.get("body"), event.get("isBase64Encoded"))


def _encode_body(resp: Response) -> Dict[str, Any]:
    body, b64 = event_reply_body(resp)
    return {"body": body, "isBase64Encoded": b64}


def _single(headers: Optional[Dict[str, Any]]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in (headers or {}).items()}


def _joined(multi: Optional[Dict[str, List[Any]]]) -> Dict[str, str]:
    return {str(k): ",".join(str(x) for x in v) for k, v in (multi or {}).items() if v}


class EventSource:
    name = ""

    @staticmethod
    def infer(event: Event) -> bool:
        raise NotImplementedError

    def decode(self, event: Event) -> Request:
        raise NotImplementedError

    def encode(self, resp: Response, event: Event) -> Dict[str, Any]:
        out: Dict[str, Any] = {"statusCode": resp.status, "headers": dict(resp.headers)}
        out.update(_encode_body(resp))
        return out


class APIGatewayV2(EventSource):
    """HTTP API (payload 2.0) and Lambda Function URLs (same format)."""

    name = "API Gateway HTTP API / Function URL"

    @staticmethod
    def infer(event: Event) -> bool:
        return event.get("version") == "2.0" and "http" in (event.get("requestContext") or {})

    def decode(self, event: Event) -> Request:
        http = event["requestContext"]["http"]
        headers = _single(event.get("headers"))
        if event.get("cookies"):
            headers["cookie"] = "; ".join(event["cookies"])
        return Request(http.get("method", "GET"), event.get("rawPath") or http.get("path", "/"),
                       headers, _body(event), query=_single(event.get("queryStringParameters")),
                       payload_limit=LAMBDA_PAYLOAD)


class ALB(EventSource):
    name = "Application Load Balancer"

    @staticmethod
    def infer(event: Event) -> bool:
        return "elb" in (event.get("requestContext") or {})

    def decode(self, event: Event) -> Request:
        headers = _joined(event.get("multiValueHeaders")) or _single(event.get("headers"))
        query = {k: unquote_plus(v[-1]) for k, v in
                 (event.get("multiValueQueryStringParameters") or {}).items() if v} or \
            {k: unquote_plus(str(v)) for k, v in (event.get("queryStringParameters") or {}).items()}
        return Request(event.get("httpMethod", "GET"), event.get("path") or "/", headers,
                       _body(event), query=query, payload_limit=LAMBDA_PAYLOAD)

    def encode(self, resp: Response, event: Event) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "statusCode": resp.status,
            "statusDescription": f"{resp.status} {HTTPStatus(resp.status).phrase}",
        }
        if "multiValueHeaders" in event:  # the target group has multi-value headers on
            out["multiValueHeaders"] = {k: [v] for k, v in resp.headers.items()}
        else:
            out["headers"] = dict(resp.headers)
        out.update(_encode_body(resp))
        return out


class APIGatewayV1(EventSource):
    """REST API (payload 1.0)."""

    name = "API Gateway REST API"

    @staticmethod
    def infer(event: Event) -> bool:
        return "httpMethod" in event and "requestContext" in event

    def decode(self, event: Event) -> Request:
        headers = _single(event.get("headers"))
        headers.update(_joined(event.get("multiValueHeaders")))
        query = _single(event.get("queryStringParameters"))
        query.update({k: str(v[-1]) for k, v in
                      (event.get("multiValueQueryStringParameters") or {}).items() if v})
        return Request(event.get("httpMethod", "GET"), event.get("path") or "/", headers,
                       _body(event), query=query, payload_limit=LAMBDA_PAYLOAD)

    def encode(self, resp: Response, event: Event) -> Dict[str, Any]:
        out = super().encode(resp, event)
        out["multiValueHeaders"] = {k: [v] for k, v in resp.headers.items()}
        return out


# order matters: ALB events also carry httpMethod and requestContext
SOURCES: List[Type[EventSource]] = [ALB, APIGatewayV2, APIGatewayV1]


def source_for(event: Any) -> Optional[EventSource]:
    if isinstance(event, dict):
        for cls in SOURCES:
            if cls.infer(event):
                return cls()
    return None


def within_limit(source: EventSource, resp: Response, event: Event, protocol: str = "") -> Dict[str, Any]:
    """``source.encode(resp, event)``, or our 413 when that reply is over what Lambda takes back."""
    return reply_within(lambda r: source.encode(r, event), resp, LAMBDA_REPLY, protocol)


def make_handler(service: Service) -> Callable[[Event, Any], Dict[str, Any]]:
    """``lambda_handler``; on Lambda the model loads and warms up during the init phase
    (this module's import), within ``INIT_LOAD_BUDGET`` seconds."""
    if service.config.platform == "aws":
        load_in_init(service, "Lambda init")

    def lambda_handler(event: Event, context: Any = None) -> Dict[str, Any]:
        source = source_for(event)
        if source is None:
            err = error_response(BadRequest(
                "unsupported Lambda event; expected API Gateway REST (v1) or HTTP API (v2), a "
                "Function URL or an ALB event"))
            return EventSource().encode(err, {})
        try:
            req = from_event(source.decode, event, source.name)
        except BadRequest as e:
            return source.encode(error_response(e), event)
        return within_limit(source, service.handle(req), event, req.protocol)

    return lambda_handler
