"""The gRPC front door (``platforms.grpc``): its pure parts in the fast lane; then a real
``tfserverless serve`` process with ``GRPC_PORT`` (and one with ``PROTOCOL=grpc``) driven by
grpcio's own client over real HTTP/2 on 127.0.0.1: health, unknown methods, auth, sizes,
malformed messages, HTTP/1.1 on the gRPC port, streams left open."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, Iterator

import pytest

from tfserverless.platforms.grpc import STATUS, metadata_headers, peer_address, status_name
from tfserverless.server import grpc_refusal, http_bind, worker_class

from ..conftest import PYTHON, Server, free_port

HEALTH = "/grpc.health.v1.Health/Check"
TOKEN = "grpc-token-never-logged-1b2c"


# --- the fast lane -------------------------------------------------------------------------


@pytest.mark.parametrize("status,code", [
    (400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (404, "NOT_FOUND"),
    (450, "RESOURCE_EXHAUSTED"), (408, "DEADLINE_EXCEEDED"), (429, "RESOURCE_EXHAUSTED"),
    (413, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE"), (500, "INTERNAL"), (599, "INTERNAL"),
])
def test_statuses_map_as_tf_serving_and_triton_use_them(status: int, code: str) -> None:
    assert status_name(status) == code


def test_every_mapped_code_is_a_grpc_status_name() -> None:
    names = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
             "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
             "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
             "UNAUTHENTICATED"}
    assert set(STATUS.values()) <= names


@pytest.mark.parametrize("peer,address", [
    ("ipv4:127.0.0.1:50051", "127.0.0.1"), ("ipv6:[::1]:50051", "::1"),
    ("unix:/tmp/x.sock", ""), ("", ""), ("ipv4:", ""),
])
def test_peer_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_binary_metadata_is_no_header() -> None:
    got = metadata_headers([("authorization", "t"), ("trace-bin", b"\x00"), ("x-a", "1")])
    assert got == {"authorization": "t", "x-a": "1"}


def test_grpc_refusals_name_the_setting() -> None:
    assert grpc_refusal({}, 8080, True) == ""
    assert grpc_refusal({"GRPC_PORT": "0"}, 8080, False) == ""
    assert "GRPC_PORT=8080 is the HTTP port too" in grpc_refusal({"GRPC_PORT": "8080"}, 8080, True)
    assert grpc_refusal({"GRPC_PORT": "8080", "PROTOCOL": "grpc"}, 8080, True) == ""
    assert "uvicorn worker" in grpc_refusal({"PROTOCOL": "grpc"}, 8080, False)
    assert grpc_refusal({"GRPC_PORT": "8500"}, 8080, True) == ""


def test_grpc_alone_keeps_http_off_the_network() -> None:
    assert http_bind("0.0.0.0", 8080, "http") == "0.0.0.0:8080"
    assert http_bind("0.0.0.0", 8080, "grpc").startswith("unix:/")


# --- a real server -------------------------------------------------------------------------

#: gRPC runs in serve's uvicorn worker; a processor without one (Python 3.7's) refuses it
needs_worker = pytest.mark.skipif(worker_class() is None, reason="no uvicorn worker here: "
                                  "test_grpc_is_refused_in_one_line_without_the_worker runs")


@pytest.mark.skipif(worker_class() is not None, reason="this Python has the uvicorn worker")
def test_grpc_is_refused_in_one_line_without_the_worker(models: Dict[str, str]) -> None:
    import subprocess

    env = dict(os.environ, MODEL_PATH=models["tf1_mnist"], GRPC_PORT=str(free_port()))
    proc = subprocess.run([PYTHON, "-m", "tfserverless", "serve", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("tfserverless: configuration error: gRPC") and "uvicorn" in lines[-1]


def grpc_server(models: Dict[str, str], **env: str) -> Server:
    return Server(dict({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                        "SERVICE_NAME": "mnist"}, **env), grpc=True)


@pytest.fixture(scope="module")
def server(models: Dict[str, str]) -> Iterator[Server]:
    if worker_class() is None:
        pytest.skip("no uvicorn worker here: gRPC is refused (tested above)")
    s = grpc_server(models, MAX_BODY_BYTES="1MiB")
    yield s
    s.stop()


def call(target: str, method: str, body: bytes, **kw: Any) -> Any:
    import grpc

    with grpc.insecure_channel(target) as ch:
        return ch.unary_unary(method)(body, timeout=kw.pop("timeout", 30), **kw)


def code_of(target: str, method: str, body: bytes, **kw: Any) -> Any:
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        call(target, method, body, **kw)
    return e.value.code().name, e.value.details()


def test_health_needs_no_token_and_says_serving(server: Server) -> None:
    assert call(server.grpc, HEALTH, b"") == b"\x08\x01"
    named = b"\n" + bytes([len("grpc.health.v1.Health")]) + b"grpc.health.v1.Health"
    assert call(server.grpc, HEALTH, named) == b"\x08\x01"


def test_health_of_an_unknown_service_is_not_found(server: Server) -> None:
    code, details = code_of(server.grpc, HEALTH, b"\n\x03foo")
    assert code == "NOT_FOUND" and "'foo'" in details


def test_malformed_health_request_is_invalid_argument_and_one_line(server: Server) -> None:
    code, details = code_of(server.grpc, HEALTH, b"\n\x7fab")
    assert code == "INVALID_ARGUMENT" and "\n" not in details


def test_unknown_method_is_unimplemented(server: Server) -> None:
    for method in ("/x.Y/Z", "/tensorflow.serving.PredictionService/Nope", "/"):
        code, _ = code_of(server.grpc, method, b"")
        assert code == "UNIMPLEMENTED"


def test_message_over_max_body_bytes_is_resource_exhausted(server: Server) -> None:
    code, _ = code_of(server.grpc, HEALTH, b"\n" + b"\xff\xff\x7f" + b"a" * (2 << 20))
    assert code == "RESOURCE_EXHAUSTED"
    assert call(server.grpc, HEALTH, b"") == b"\x08\x01"


def test_http1_on_the_grpc_port_is_refused_and_serving_goes_on(server: Server) -> None:
    host, port = server.grpc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 0\r\n\r\n")
        s.settimeout(10)
        try:
            got = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            got = b""
    assert b"SERVING" not in got and b"\x08\x01" not in got
    assert call(server.grpc, HEALTH, b"") == b"\x08\x01"


def test_streams_left_open_do_not_stop_serving(server: Server) -> None:
    """Connections that open streams and never finish their message (HTTP/2 preface, HEADERS,
    then nothing): the server keeps answering other calls."""
    host, port = server.grpc.split(":")
    held = []
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    for _ in range(50):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(preface)
        held.append(s)
    try:
        t0 = time.monotonic()
        assert call(server.grpc, HEALTH, b"") == b"\x08\x01"
        assert time.monotonic() - t0 < 30
    finally:
        for s in held:
            s.close()


@needs_worker
def test_grpc_alone_serves_on_port(models: Dict[str, str]) -> None:
    """``PROTOCOL=grpc``: PORT itself speaks gRPC; HTTP is not on the network."""
    import requests

    s = Server({"MODEL_PATH": models["tf1_mnist"], "PROTOCOL": "grpc"}, wait_ready=False)
    try:
        target = f"127.0.0.1:{s.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if call(target, HEALTH, b"", timeout=5) == b"\x08\x01":
                    break
            except Exception:
                if time.monotonic() > deadline or s.proc.poll() is not None:
                    raise AssertionError(s.log()[-3000:]) from None
            time.sleep(0.3)
        with pytest.raises(requests.RequestException):
            requests.get(s.url + "/healthz", timeout=5)
    finally:
        s.stop()
