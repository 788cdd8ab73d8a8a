"""Bytes in flight over real HTTP: what a client declares costs nothing, a client without the
token is answered before its body is read, and an authorised request is served while
connections that declared huge bodies sit waiting."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from typing import Any, Dict, Iterator, List

import pytest
import requests

from .conftest import Server

TOKEN = "inflight-token-31415"
BODY = json.dumps({"signature_name": "predict_images", "instances": [[0.5] * 784]}).encode()
HEAD = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 67108864\r\n")


@pytest.fixture(scope="module", params=["app", "predict", "predict_flask"])
def server(models: Dict[str, str], request: Any) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                "BODY_READ_TIMEOUT": "30"}, target=request.param)
    yield s
    s.stop()


def stalled(server: Server, head: bytes, count: int = 8) -> List[socket.socket]:
    """Connections that send only headers declaring a 64 MiB body, then nothing."""
    conns = []
    for _ in range(count):
        c = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        c.sendall(head + b"\r\n")
        conns.append(c)
    time.sleep(0.3)  # the server has read every header block
    return conns


def served(server: Server) -> requests.Response:
    return requests.post(server.url + "/v1/models/m:predict", data=BODY, timeout=10,
                         headers={"Authorization": TOKEN})


def test_declared_lengths_without_the_token_hold_nothing(server: Server) -> None:
    conns = stalled(server, HEAD)
    try:
        for c in conns:  # answered from the headers, before any body byte: no token, no read
            reply = c.recv(4096)
            assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
        for _ in range(3):
            r = served(server)
            assert r.status_code == 200, r.text
    finally:
        for c in conns:
            c.close()


def test_declared_lengths_with_the_token_hold_nothing_until_bytes_arrive(server: Server) -> None:
    # before: each reserved its declared 64 MiB for BODY_READ_TIMEOUT, so four of them took
    # MAX_INFLIGHT_BYTES (256 MiB) and every other request got 450 for 30 s
    conns = stalled(server, HEAD + b"Authorization: " + TOKEN.encode() + b"\r\n")
    try:
        for _ in range(3):
            r = served(server)
            assert r.status_code == 200, r.text
        health = requests.get(server.url + "/healthz", headers={"Authorization": TOKEN}).json()
        assert health["queue"]["shed"]["450"] == 0, health
    finally:
        for c in conns:
            c.close()


def tfs(server: Server, body: bytes, **headers: str) -> requests.Response:
    headers = {"Authorization": TOKEN, "Content-Type": "application/json", **headers}
    return requests.post(server.url + "/v1/models/m:predict", data=body, headers=headers,
                         timeout=60)


def test_json_limit_holds_whatever_v2_header_is_sent(server: Server) -> None:
    # Inference-Header-Content-Length means something only on V2: on TF Serving REST it used
    # to cap the JSON size check at 0 bytes, so 16 MiB of JSON was parsed (1.8 s, +300 MB)
    body = b'{"instances": [' + b"0.5," * (4 << 20) + b"0.5]}"
    r = tfs(server, body, **{"Inference-Header-Content-Length": "0"})
    assert r.status_code == 413 and "MAX_JSON_BYTES" in r.json()["error"], r.text[:300]


def test_json_bodies_inflate_only_to_the_json_limit(server: Server) -> None:
    # a 1 MB gzip of ~1 GB: inflating stops at MAX_JSON_BYTES (8 MiB), not MAX_BODY_BYTES
    bomb = gzip.compress(b'{"instances": [' + b" " * (1 << 30), compresslevel=9)
    r = tfs(server, bomb, **{"Content-Encoding": "gzip"})
    assert r.status_code == 413, r.text[:300]
    assert "inflates past the limit of 8388608 bytes (MAX_JSON_BYTES)" in r.json()["error"]
    v2 = requests.post(server.url + "/v2/models/m/infer", data=bomb, timeout=60, headers={
        "Authorization": TOKEN, "Content-Encoding": "gzip"})
    assert v2.status_code == 413 and "MAX_JSON_BYTES" in v2.json()["error"], v2.text[:300]
    assert served(server).status_code == 200


def test_a_burst_of_inflating_json_is_shed_and_an_honest_request_served(server: Server) -> None:
    # 8 KB of gzip that inflates to 8 MiB of empty lists: it was ~1 s and ~300 MB to parse
    # each (16 clients: an honest request waited 17 s); now inflated in the admitted slot,
    # counted at what it inflates to and what parsing takes (450 when others are in flight),
    # and refused for its 2.8M arrays before any parser builds them (400)
    bomb = gzip.compress(b'{"instances": [' + b"[]," * ((8 << 20) // 3 - 10) + b"[]]}")
    assert len(bomb) < 16 << 10
    statuses: List[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append(tfs(server, bomb, **{"Content-Encoding": "gzip"}).status_code)
            except requests.RequestException:
                statuses.append(-1)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        honest = [served(server).status_code for _ in range(3)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert honest == [200, 200, 200], honest
    assert statuses and set(statuses) <= {400, 450}, sorted(set(statuses))
