"""JSON event bodies (Lambda, FC), fast lane: the one decoder both adapters use."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import pytest

from tfserverless.errors import BadRequest
from tfserverless.messages import Response
from tfserverless.platforms import aws_lambda, event_body, event_reply_body, fc, reply_size

from ..conftest import DATA


def test_text_base64_and_nothing() -> None:
    assert event_body("héllo", False) == "héllo".encode()
    assert event_body("aGk=", True) == b"hi"
    assert event_body(None, True) == b"" and event_body("", False) == b""


@pytest.mark.parametrize("body", [10 ** 9, 1.5, ["x"], {"a": 1}, True])
def test_a_body_that_is_not_a_string_is_a_400_before_anything_is_made(body: object) -> None:
    # bytes(10**9) would have made a gigabyte of zeros
    with pytest.raises(BadRequest, match="expected a string"):
        event_body(body, False)


def test_bad_base64_is_a_400() -> None:
    with pytest.raises(BadRequest, match="not valid base64"):
        event_body("a", True)


def test_replies_are_text_or_base64() -> None:
    assert event_reply_body(Response(200, b"{}", {"Content-Type": "application/json"})) == ("{}", False)
    assert event_reply_body(Response(200, b"\x00\x01", {"Content-Type": "application/octet-stream"})) \
        == ("AAE=", True)


def test_a_lone_surrogate_in_a_text_body_is_a_400() -> None:
    # json.loads makes one of "\ud800": an event's text need not be encodable as UTF-8
    with pytest.raises(BadRequest, match="not valid UTF-8 text"):
        event_body("{\"x\": \"\ud800\"}", False)


def _service() -> Any:
    from tfserverless.backends.holder import ModelHolder
    from tfserverless.config import Config
    from tfserverless.serving.service import Service

    return Service(Config.from_environ({"MODEL_PATH": "/m"}),
                   ModelHolder(lambda: object()))  # type: ignore[arg-type,return-value]


FC_EVENT = {"version": "v1", "rawPath": "/", "headers": {}, "queryParameters": {}, "body": "",
            "isBase64Encoded": False, "requestContext": {"http": {"method": "GET", "path": "/"}}}


@pytest.mark.parametrize("over", [
    {"headers": [1, 2]}, {"headers": "x"}, {"queryParameters": [1]},
    {"requestContext": {"http": "x"}}, {"requestContext": [1]},
    {"requestContext": {"http": {"method": 5}}}])
def test_a_malformed_fc_event_is_a_400_naming_it(over: Dict[str, Any]) -> None:
    reply = fc.make_handler(_service())(json.dumps(dict(FC_EVENT, **over)), None)
    assert reply["statusCode"] == 400 and "malformed FC HTTP trigger event" in reply["body"]


@pytest.mark.parametrize("over", [
    {"headers": [1]}, {"cookies": 5}, {"queryStringParameters": [1]},
    {"requestContext": {"http": "x"}}])
def test_a_malformed_lambda_event_is_a_400_naming_it(over: Dict[str, Any]) -> None:
    with open(os.path.join(DATA, "apigw_v2_http.json")) as f:
        event = dict(json.load(f), **over)
    reply = aws_lambda.make_handler(_service())(event, None)
    assert reply["statusCode"] == 400, reply
    assert "malformed" in reply["body"] or "unsupported Lambda event" in reply["body"], reply


SOURCES = {"v1": "apigw_v1_rest.json", "v2": "apigw_v2_http.json", "alb": "alb.json",
           "alb_multivalue": "alb_multivalue.json", "url": "lambda_function_url.json"}
#: a TF Serving JSON reply of string tensors: every quote doubles once escaped into the reply
QUOTES = b'{"outputs":[' + b'"\\"",' * 900_000 + b'""]}'
BINARY = {"Content-Type": "application/octet-stream"}


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("resp,over", [
    (Response(200, QUOTES, {"Content-Type": "application/json"}), True),  # 4.5 MB, 8.1 escaped
    (Response(200, b"\x01" * aws_lambda.LAMBDA_PAYLOAD.nbytes, BINARY), True),  # base64 + envelope
    (Response(200, b"\x01" * (aws_lambda.LAMBDA_PAYLOAD.nbytes - 1024), BINARY), False),
    (Response(200, b"[" + b"1.0," * 1_000_000 + b"0]", {"Content-Type": "application/json"}), False),
])
def test_a_reply_over_lambdas_6_mb_once_encoded_is_our_413(name: str, resp: Response,
                                                         over: bool) -> None:
    """Under LAMBDA_PAYLOAD as bytes is not enough: Lambda measures the JSON it is handed."""
    with open(os.path.join(DATA, SOURCES[name]), encoding="utf-8") as f:
        event = json.load(f)
    source = aws_lambda.source_for(event)
    assert source is not None
    reply = aws_lambda.within_limit(source, resp, event, "tfserving")
    assert reply_size(reply) <= aws_lambda.LAMBDA_REPLY.nbytes
    if not over:
        assert reply == source.encode(resp, event)
        return
    assert reply["statusCode"] == 413
    message = json.loads(reply["body"])["error"]
    assert "over AWS Lambda's 6 MB synchronous payload limit of 6291456 bytes" in message
    assert "\n" not in message


@pytest.mark.parametrize("resp,over", [
    (Response(200, b'{"outputs":[' + b'"\\"",' * 4_000_000 + b'""]}',
              {"Content-Type": "application/json"}), True),  # 20 MB, 36 escaped
    (Response(200, b"\x01" * fc.FC_PAYLOAD.nbytes, BINARY), True),  # base64 + envelope
    (Response(200, b"\x01" * (fc.FC_PAYLOAD.nbytes - 1024), BINARY), False),
])
def test_a_reply_over_fcs_32_mb_once_encoded_is_our_413(resp: Response, over: bool) -> None:
    """The sibling on FC's event functions: FC too measures the JSON it is handed back."""
    with open(os.path.join(DATA, "fc3_http.json"), encoding="utf-8") as f:
        event = json.load(f)
    service = _service()
    service.handle = lambda req: resp  # type: ignore[method-assign]  # the reply under test
    reply = fc.make_handler(service)(event, None)
    assert reply_size(reply) <= fc.FC_REPLY.nbytes
    if not over:
        assert reply == fc.encode_response(resp)
        return
    assert reply["statusCode"] == 413
    assert "over Function Compute's 32 MB synchronous payload limit of 33554432 bytes" in \
        reply["body"]
    assert "\n" not in reply["body"].rstrip("\n")
