"""HEADER_READ_TIMEOUT and MAX_HEAD_BYTES over raw sockets (issue #25): request heads that stall
or trickle get a 408 and are closed at the deadline, heads that do not end get a 431 and are
closed at the byte cap, on ``tfserverless serve`` (uvicorn's "auto" protocol, httptools where
it is installed) and on uvicorn's h11 protocol wrapped the same way."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import requests

from tfserverless.config import MAX_HEAD_BYTES, MAX_HEADER_BYTES

from .conftest import PYTHON, ROOT, Server, free_port

DEADLINE = 1.0
BOUND = 15.0  # against a 1 s deadline: a loaded 2-core machine must not flake
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\nX-Stalled: "

#: uvicorn on its h11 protocol, wrapped by ``http_guard.wrap``, before an app that answers
#: every request with 200 and the length of its body
H11_SERVER = """
import sys, uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from tfserverless.http_guard import wrap

async def app(scope, receive, send):
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    body = b"%d bytes\\n" % size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=wrap(H11Protocol, float(sys.argv[2])),
            lifespan="off", log_level="warning")
"""


class H11Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([PYTHON, "-c", H11_SERVER, str(self.port), str(DEADLINE)],
                                     env=env, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            try:
                if requests.get(self.url + "/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError("the h11 server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture(scope="module", params=["serve", "h11"])
def server(request: Any) -> Iterator[Any]:
    if request.param == "serve":
        models: Dict[str, str] = request.getfixturevalue("models")
        s: Any = Server({"MODEL_PATH": models["tf1_mnist"], "HEADER_READ_TIMEOUT": str(DEADLINE)})
    else:
        pytest.importorskip("h11")
        s = H11Server()
    yield s
    s.stop()


def read_until_closed(socks: List[socket.socket], bound: float) -> List[Tuple[float, bytes]]:
    """What each socket received and when it was closed (inf: still open at ``bound``)."""
    sel = selectors.DefaultSelector()
    got: List[Tuple[float, bytes]] = [(float("inf"), b"")] * len(socks)
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    t0, left = time.monotonic(), len(socks)
    while left and time.monotonic() - t0 < bound:
        for key, _ in sel.select(0.1):
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except ConnectionError:
                data = b""
            took, so_far = got[key.data]
            if data:
                got[key.data] = (took, so_far + data)
            else:
                got[key.data] = (time.monotonic() - t0, so_far)
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    return got


def is_408(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    return (head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
            and body.count(b"\n") == 1 and b"HEADER_READ_TIMEOUT" in body
            and b"within 1s" in body)


def response(conn: socket.socket) -> Tuple[int, bytes]:
    """One response's status and body from a keep-alive connection (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = conn.recv(4096)
        assert chunk, f"closed mid-body: {data!r}"
        body += chunk
    assert len(body) == length, "more than one response"
    return int(head.split(b" ")[1]), body


def test_twenty_stalled_heads_are_408_and_closed(server: Any) -> None:
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    for i, s in enumerate(socks):  # mid-header, mid-request-line, or nothing at all
        s.sendall(PARTIAL if i % 3 == 0 else b"GET /hea" if i % 3 == 1 else b"")
    # they hold the server nothing: an honest request is answered before their deadline
    assert requests.get(server.url + "/", timeout=BOUND).status_code == 200
    try:
        got = read_until_closed(socks, BOUND)
    finally:
        for s in socks:
            s.close()
    still_open = sum(took == float("inf") for took, _ in got)
    assert still_open == 0, f"{still_open} of 20 stalled connections still open after {BOUND}s"
    assert all(is_408(reply) for _, reply in got), {reply for _, reply in got}
    assert min(took for took, _ in got) > 0.5 * DEADLINE  # cut at the deadline, not before


def test_slowloris_trickling_a_byte_at_a_time_is_cut(server: Any) -> None:
    conn = socket.create_connection(("127.0.0.1", server.port))
    conn.settimeout(0.3)  # a header byte every 0.3 s, for as long as the server listens
    reply, sent, t0 = b"", 0, time.monotonic()
    try:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - t0 < BOUND:
            try:
                conn.sendall(b"X-Slow: a\r\n"[sent % 11:sent % 11 + 1])
                sent += 1
                chunk = conn.recv(4096)
            except socket.timeout:
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            reply += chunk
    finally:
        conn.close()
    took = time.monotonic() - t0
    assert took < BOUND and is_408(reply), (took, sent, reply)
    assert sent < BOUND / 0.3  # cut while bytes were still arriving, not for the lack of them


def test_a_normal_request_still_gets_200_after_the_stalls(server: Any) -> None:
    r = requests.get(server.url + "/", timeout=BOUND)
    assert r.status_code == 200


def test_keep_alive_requests_each_get_their_own_deadline(server: Any) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as conn:
        conn.sendall(request)
        assert response(conn)[0] == 200
        time.sleep(0.9)  # idle: uvicorn's keep-alive (2 s under gunicorn, 5 s alone) governs it
        conn.sendall(request[:10])
        time.sleep(0.3)  # the connection is older than the deadline; this head is not
        conn.sendall(request[10:])
        assert response(conn)[0] == 200
        conn.sendall(PARTIAL)  # a third head that stalls is cut
        [(took, reply)] = read_until_closed([conn], BOUND)
    assert took < BOUND and is_408(reply), (took, reply)


def test_a_slow_body_is_not_cut_by_the_head_deadline(server: Any) -> None:
    """The deadline ends with the head: a body has BODY_READ_TIMEOUT (30 s here)."""
    body = b"\x0a\x00"  # EAS: a request with no inputs (400 naming the missing one)
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
        for byte in body:
            time.sleep(0.8)
            conn.sendall(bytes([byte]))
        status, text = response(conn)
    assert status == (200 if isinstance(server, H11Server) else 400), text


def is_431(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    return (head.startswith(b"HTTP/1.1 431 ") and b"connection: close" in head.lower()
            and body == b"request line and headers over %d KiB; expected a shorter URL or "
            b"fewer or shorter headers\n" % (MAX_HEAD_BYTES >> 10))


def test_an_endless_header_block_is_431_and_closed_at_the_byte_cap(server: Any) -> None:
    """Header lines without end, as fast as the client can send them: the server answers 431
    and closes once the head passes MAX_HEAD_BYTES, long before the client sends 8 MiB (before
    the cap the server read and kept every line until the deadline: all 8 MiB here; 200 MiB cost
    the worker +229 MiB RSS)."""
    most = 8 << 20
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)  # sent ~ what it read
    sent, stopped = [0], []

    def push() -> None:
        line = b"X-Pad: " + b"a" * 1015 + b"\r\n"
        try:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while sent[0] < most:
                conn.sendall(line * 16)
                sent[0] += 16 << 10
            stopped.append("sent it all")
        except OSError as e:  # the server closed (reset), or BOUND passed (timeout)
            stopped.append(repr(e))

    pusher = threading.Thread(target=push, daemon=True)
    reply, took, t0 = b"", float("inf"), time.monotonic()
    pusher.start()
    try:
        while True:  # blocking reads (the pusher's sends must block too), each within BOUND
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                break
            except ConnectionError:  # reset: it closed with the client's bytes unread
                chunk = b""
            if not chunk:
                took = time.monotonic() - t0
                break
            reply += chunk
        pusher.join(BOUND)
    finally:
        conn.close()
    assert not pusher.is_alive() and stopped, "the client is still sending"
    assert is_431(reply), (took, sent[0], stopped, reply)  # the cap's answer, not the timer's
    assert took < BOUND and sent[0] < most, (took, sent[0], stopped)


def head_of(url_bytes: int, header_bytes: int) -> bytes:
    """A GET / whose request line is ``url_bytes`` long and whose header names and values
    come to ``header_bytes``, as the app counts them (in fields of ~1 KiB)."""
    line = b"GET /?pad=" + b"u" * (url_bytes - 21) + b" HTTP/1.1\r\n"
    fields, left = [b"host: x"], header_bytes - len(b"host" b"x")
    while left > 0:
        name = b"x-pad-%03d" % len(fields)
        value = b"h" * min(left - len(name), 1015)
        fields.append(name + b": " + value)
        left -= len(name) + len(value)
    assert len(line) == url_bytes and left == 0
    return line + b"\r\n".join(fields) + b"\r\n\r\n"


def test_a_head_at_the_apps_limit_with_a_long_url_is_served(server: Any) -> None:
    """Headers of exactly the app's 64 KiB and a 60 KiB URL, sent in 4 KiB pieces (several
    reads): the normal answer, not the wire cap's 431; a byte more of headers is the app's
    own 431 (tfserverless serve; the h11 test app has no header limit)."""
    ok = head_of(60 << 10, MAX_HEADER_BYTES)
    assert len(ok) <= MAX_HEAD_BYTES
    over = head_of(60 << 10, MAX_HEADER_BYTES + 1)
    replies = []
    for request in (ok, over):
        with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as conn:
            for i in range(0, len(request), 4096):
                conn.sendall(request[i:i + 4096])
                time.sleep(0.002)
            replies.append(response(conn))
    (status, body), (over_status, over_body) = replies
    assert status == 200, body
    if not isinstance(server, H11Server):
        assert over_status == 431 and b"request headers over 64 KiB" in over_body, over_body
