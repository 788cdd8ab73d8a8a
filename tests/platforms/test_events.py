"""JSON event bodies (Lambda, FC), fast lane: the one decoder both adapters use."""

from __future__ import annotations

import pytest

from tfserverless.errors import BadRequest
from tfserverless.messages import Response
from tfserverless.platforms import event_body, event_reply_body


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
