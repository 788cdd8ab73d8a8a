"""Warm-up is replayed before traffic, from each file kind: ``WARM_UP_COUNT`` times through
the predict path as the model loads, then (``tfserverless serve``) each request that succeeded
``PATH_REPLAYS`` times through the server's whole ASGI path, before readiness says 200."""

from __future__ import annotations

import base64
import uuid
from typing import Any, Dict

import numpy as np
import pytest
import requests

from tfserverless import protocol
from tfserverless.platforms.asgi import PATH_REPLAYS
from tfserverless.protocol import tfrecord
from tfserverless.server import worker_class

from ..conftest import FileServer, MotoServer

#: the path replays of `tfserverless serve`'s bare ASGI app; where no uvicorn worker is
#: installed (the Python 3.7 processors) it runs functions-framework's server, which has none
REPLAYS = PATH_REPLAYS if worker_class() else 0
X = protocol.encode_request({"x": np.array([1.0], np.float32)})


def first_calls(server: Any) -> int:
    r = requests.post(server.url + "/", data=protocol.encode_request({"x": np.ones(2, np.float32)}))
    assert r.status_code == 200, r.text
    return int(protocol.decode_response(r.content)["calls"])


def test_tf_serving_warmup_file_in_the_model(start_server: Any, models: Dict[str, str]) -> None:
    s = start_server({"MODEL_PATH": models["counter"], "WARM_UP_COUNT": "3"})
    health = requests.get(s.url + "/healthz").json()
    assert health["warm_up"]["source"] == "assets.extra/tf_serving_warmup_requests"
    assert health["warm_up"]["requests"] == 1 and health["warm_up"]["replayed"] == 3
    metrics = requests.get(s.url + "/metrics").text
    assert 'protocol="eas"' not in metrics  # the replays through the server are not traffic
    # three replays on the model, then three through the server, before the first request
    assert first_calls(s) == 3 + REPLAYS + 1
    log = s.log()
    assert "warm-up: 1 request(s) x 3" in log and "first request:" in log
    if REPLAYS:
        assert "warm-up through the server: 1 request(s)" in log
        assert log.index("warm-up through the server") < log.index("first request:")
    assert "after warm-up of 3 replays" in log
    assert 'request_count{protocol="eas",status="200"} 1' in requests.get(s.url + "/metrics").text


def test_no_warmup(start_server: Any, models: Dict[str, str]) -> None:
    s = start_server({"MODEL_PATH": models["counter"], "WARM_UP_COUNT": "0"})
    assert first_calls(s) == 1
    assert "first request:" in s.log() and "(no warm-up)" in s.log()
    assert "warm-up through the server" not in s.log()


def test_bin_file_over_http(start_server: Any, files: FileServer, models: Dict[str, str]) -> None:
    files.files["/warm.bin"] = X
    s = start_server({"MODEL_PATH": models["counter"], "WARM_UP_COUNT": "2",
                      "WARM_UP_DATA_PATH": files.url + "/warm.bin"})
    assert first_calls(s) == 2 + REPLAYS + 1


def test_txt_file_from_s3_with_a_failing_request(start_server: Any, moto: MotoServer,
                                                 models: Dict[str, str]) -> None:
    bucket = "w-" + uuid.uuid4().hex[:10]
    moto.client().create_bucket(Bucket=bucket)
    bad = protocol.encode_request({"nope": np.array([1.0], np.float32)})
    text = b"# two requests, one wrong\n" + base64.b64encode(X) + b"\n\n" + base64.b64encode(bad)
    moto.client().put_object(Bucket=bucket, Key="warm.txt", Body=text)
    s = start_server(dict(moto.env(), MODEL_PATH=models["counter"],
                          WARM_UP_DATA_PATH=f"s3://{bucket}/warm.txt"))
    health = requests.get(s.url + "/healthz").json()
    assert health["status"] == "ready"  # a failed warm-up request never stops the service
    w = health["warm_up"]
    assert w["requests"] == 2 and w["replayed"] == 5 and w["failed"] == 1
    assert "request 2: unknown input 'nope'" in w["errors"][0]
    assert "warm-up request 2 failed: unknown input 'nope'" in s.log()
    assert first_calls(s) == 5 + REPLAYS + 1  # only the good request goes through the server


def test_unusable_warmup_file_is_reported(start_server: Any, files: FileServer,
                                          models: Dict[str, str]) -> None:
    files.files["/w.txt"] = b"!!! not base64 !!!\n"
    s = start_server({"MODEL_PATH": models["counter"], "WARM_UP_DATA_PATH": files.url + "/w.txt"})
    health = requests.get(s.url + "/healthz").json()
    assert health["status"] == "ready" and "line 1 is not base64" in health["warm_up"]["errors"][0]


def test_tfrecord_reader_checks_crcs() -> None:
    data = tfrecord.write_tfrecords([b"abc", b"defg"])
    assert tfrecord.read_tfrecords(data) == [b"abc", b"defg"]
    broken = bytearray(data)
    broken[13] ^= 1
    with pytest.raises(tfrecord.RecordError, match="CRC"):
        tfrecord.read_tfrecords(bytes(broken))
    with pytest.raises(tfrecord.RecordError, match="truncated"):
        tfrecord.read_tfrecords(data[:-3])
    assert tfrecord.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
