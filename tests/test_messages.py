"""HTTP types, fast lane: request bodies' Content-Encoding, error replies per protocol."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tfserverless.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from tfserverless.messages import Request, decoded_body, error_response


def test_content_encoding_is_undone_within_the_body_limit() -> None:
    def req(body: bytes, coding: str) -> Request:
        return Request("POST", "/v2/models/m/infer", {"Content-Encoding": coding}, body)

    data = b'{"inputs": []}' * 100
    assert decoded_body(req(gzip.compress(data), "gzip"), 1 << 20) == data
    assert decoded_body(req(zlib.compress(data), "deflate"), 1 << 20) == data
    assert decoded_body(req(data, "identity"), 1 << 20) == data
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(PayloadTooLarge, match="inflates past the limit of 1048576"):
        decoded_body(req(bomb, "gzip"), 1 << 20)
    with pytest.raises(UnsupportedMediaType, match="'br' is not supported"):
        decoded_body(req(data, "br"), 1 << 20)
    with pytest.raises(BadRequest, match="truncated"):
        decoded_body(req(gzip.compress(data)[:-12], "gzip"), 1 << 20)
    with pytest.raises(BadRequest, match="not valid gzip"):
        decoded_body(req(b"plain", "gzip"), 1 << 20)


def test_errors_take_the_form_of_the_protocol() -> None:
    e = BadRequest("input 'x' has shape [1]; expected [2]")
    text = error_response(e)
    assert text.body == b"input 'x' has shape [1]; expected [2]\n"
    assert text.headers["Content-Type"].startswith("text/plain")
    for proto in ("tfserving", "v2"):
        r = error_response(e, proto)
        assert r.status == 400 and json.loads(r.body) == {"error": e.message}
        assert r.headers["Content-Type"] == "application/json"
