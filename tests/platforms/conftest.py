"""Drive each adapter with the platforms' real event payloads into a real loaded model."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tfserverless.config import Config
from tfserverless.platforms import asgi, aws_lambda, fc, wsgi
from tfserverless.serving.app import create_service
from tfserverless.serving.auth import eas_signature
from tfserverless.serving.service import Service

from ..conftest import DATA

TOKEN = "platform-token-3141"
SERVICE = "mnist"

Reply = Tuple[int, Dict[str, str], bytes]
Caller = Callable[..., Reply]


def fixture(name: str) -> Dict[str, Any]:
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return dict(json.load(f))


def make_service(model: str, **env: str) -> Service:
    base = {"MODEL_PATH": model, "SERVICE_TOKEN": TOKEN, "SERVICE_NAME": SERVICE,
            "LOG_LEVEL": "WARNING"}
    base.update(env)
    service = create_service({}, config=Config.from_environ(base))
    service.holder.load_now()
    return service


@pytest.fixture(scope="package")
def mnist_service(models: Dict[str, str]) -> Iterator[Service]:
    s = make_service(models["tf1_mnist"])
    yield s
    s.holder.model.close()


def signed(body: bytes, path: str = "/api/predict/" + SERVICE) -> Dict[str, str]:
    md5 = hashlib.md5(body).hexdigest()
    date = "Tue, 25 Nov 2026 10:00:00 GMT"
    ctype = "application/octet-stream"
    sig = eas_signature(TOKEN, method="POST", content_md5=md5, content_type=ctype, date=date,
                        resource=path)
    return {"Authorization": sig, "Content-MD5": md5, "Date": date, "Content-Type": ctype}


def _lower_merge(headers: Dict[str, str], extra: Dict[str, str], *, lower: bool) -> Dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() not in {e.lower() for e in extra}}
    out.update({(k.lower() if lower else k): v for k, v in extra.items()})
    return out


def _b64(body: bytes) -> str:
    return base64.b64encode(body).decode()


def unpack_lambda(reply: Dict[str, Any]) -> Reply:
    headers = reply.get("headers") or {k: v[-1] for k, v in
                                       (reply.get("multiValueHeaders") or {}).items()}
    body = base64.b64decode(reply["body"]) if reply["isBase64Encoded"] else \
        reply["body"].encode()
    return reply["statusCode"], headers, body


def lambda_event(template: Dict[str, Any], method: str, path: str,
                 headers: Optional[Dict[str, str]] = None, body: bytes = b"",
                 query: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """A request as the event ``template`` (a sample from tests/data) would carry it."""
    ev = copy.deepcopy(template)
    extra = dict(headers or {})
    ev["body"], ev["isBase64Encoded"] = _b64(body), True
    if "multiValueHeaders" in ev:
        merged = _lower_merge({k: v[0] for k, v in ev["multiValueHeaders"].items()}, extra,
                              lower=False)
        ev["multiValueHeaders"] = {k: [v] for k, v in merged.items()}
        if "headers" in ev:
            ev["headers"] = merged
    else:
        ev["headers"] = _lower_merge(ev["headers"], extra, lower=True)
    if ev.get("version") == "2.0":
        ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
        ev["requestContext"]["http"]["method"] = method
        ev["queryStringParameters"] = query
    else:
        ev["path"] = path
        ev["httpMethod"] = method
        if "multiValueQueryStringParameters" in ev:
            ev["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()}
        if "queryStringParameters" in ev:  # REST (v1) events carry both forms
            ev["queryStringParameters"] = query
    return ev


def lambda_caller(fixture_name: str, service: Service) -> Caller:
    handler = aws_lambda.make_handler(service)
    template = fixture(fixture_name)

    def call(method: str, path: str, headers: Optional[Dict[str, str]] = None,
             body: bytes = b"", query: Optional[Dict[str, str]] = None) -> Reply:
        ev = lambda_event(template, method, path, headers, body, query)
        reply = handler(json.loads(json.dumps(ev)), None)
        if "elb" in ev["requestContext"]:
            assert reply["statusDescription"].startswith(str(reply["statusCode"]))
            assert ("multiValueHeaders" in reply) == ("multiValueHeaders" in template)
        return unpack_lambda(reply)

    return call


def fc3_caller(service: Service) -> Caller:
    handler = fc.make_handler(service)
    template = fixture("fc3_http.json")

    def call(method: str, path: str, headers: Optional[Dict[str, str]] = None,
             body: bytes = b"", query: Optional[Dict[str, str]] = None) -> Reply:
        ev = copy.deepcopy(template)
        ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
        ev["requestContext"]["http"]["method"] = method
        ev["headers"] = _lower_merge(ev["headers"], dict(headers or {}), lower=False)
        ev["queryParameters"] = query or {}
        ev["body"], ev["isBase64Encoded"] = _b64(body), True
        reply = handler(json.dumps(ev).encode(), object())  # FC passes the event as bytes
        return unpack_lambda(reply)

    return call


def wsgi_caller(service: Service) -> Caller:
    """FC 2.0 HTTP functions: the same ``handler`` called the WSGI way."""
    handler = fc.make_handler(service)

    def call(method: str, path: str, headers: Optional[Dict[str, str]] = None,
             body: bytes = b"", query: Optional[Dict[str, str]] = None) -> Reply:
        from urllib.parse import urlencode

        environ: Dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": urlencode(query or {}),
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
            "SERVER_NAME": "fc", "SERVER_PORT": "9000", "wsgi.url_scheme": "http",
        }
        for k, v in (headers or {}).items():
            if k.lower() == "content-type":
                environ["CONTENT_TYPE"] = v
            else:
                environ["HTTP_" + k.upper().replace("-", "_")] = v
        status: List[Any] = []
        chunks = handler(environ, lambda s, h: status.extend([s, dict(h)]))
        return int(status[0].split()[0]), status[1], b"".join(chunks)

    assert wsgi.is_wsgi_call({"REQUEST_METHOD": "GET"}, print)
    return call


def asgi_caller(service: Service, *, chunk: int = 0) -> Caller:
    """``make_app`` (what ``tfserverless serve`` and Cloud Run run) called in-process with the
    scope, ``receive`` and ``send`` an ASGI server would give it: lower-case header names,
    ``content-length`` as a client declares it, the body in ``chunk``-byte messages (0: one);
    a ``None`` body is a client that disconnects instead of sending one.  Returns the status
    (0 when nothing was sent), the headers and the body, checking what every reply must hold
    (``content-length`` is the body's, HEAD sends none of it)."""
    app = asgi.make_app(service)

    def call(method: str, path: str, headers: Optional[Dict[str, str]] = None,
             body: Optional[bytes] = b"", query: Optional[Dict[str, str]] = None) -> Reply:
        from urllib.parse import urlencode

        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        if body and not chunk and "content-length" not in {k.lower() for k in headers or {}}:
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path,
                 "raw_path": path.encode("latin-1"),
                 "query_string": urlencode(query or {}).encode("latin-1"), "headers": raw,
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}
        if body is None:
            messages: List[Dict[str, Any]] = [{"type": "http.disconnect"}]
        else:
            step = chunk or max(1, len(body))
            parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
            messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                        for i, p in enumerate(parts)]
        sent: List[Dict[str, Any]] = []

        async def receive() -> Dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.get_running_loop().create_future()  # a client that stays
            raise AssertionError("unreachable")

        async def send(message: Dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        if not sent:
            return 0, {}, b""
        start, reply = sent
        assert start["type"] == "http.response.start" and reply["type"] == "http.response.body"
        got = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
        assert len(got) == len(start["headers"])  # no header sent twice
        if method == "HEAD":
            assert reply["body"] == b""
        else:
            assert int(got["content-length"]) == len(reply["body"])
        return int(start["status"]), got, reply["body"]

    return call


PLATFORMS = ["apigw_v1_rest", "apigw_v2_http", "lambda_function_url", "alb", "alb_multivalue",
             "fc3_http", "fc2_wsgi"]


def caller_for(name: str, service: Service) -> Caller:
    if name == "fc3_http":
        return fc3_caller(service)
    if name == "fc2_wsgi":
        return wsgi_caller(service)
    return lambda_caller(name + ".json", service)
