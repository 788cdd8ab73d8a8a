"""Adaptive batching over real HTTP, on both functions-framework servers: concurrent distinct
requests get exactly what each gets alone, mixed shapes and signatures in one burst, a bad
request among good ones, a signature whose output has no batch dimension."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tfserverless import protocol

from ..conftest import Server
from ..serving.test_service_http import serves_asgi


@pytest.fixture(scope="module", params=["app", "predict_flask"])
def server(request: Any, models: Dict[str, str]) -> Iterator[Server]:
    if request.param == "app" and not serves_asgi("app"):
        pytest.skip("no uvicorn worker here: `app` is served by functions-framework's Flask")
    s = Server({"MODEL_PATH": models["batchy"], "RPC_BATCHING": "true", "LOG_LEVEL": "INFO"},
               target=request.param)
    yield s
    s.stop()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def send_all(url: str, bodies: List[bytes]) -> List[Tuple[int, bytes, Any]]:
    """Every body at once, each on its own connection."""
    out: List[Tuple[int, bytes, Any]] = [(0, b"", {})] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        gate.wait()
        r = requests.post(url + "/", data=bodies[i], timeout=60)
        out[i] = (r.status_code, r.content, r.headers)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def scrape(url: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def test_burst_of_mixed_requests_gets_what_each_gets_alone(server: Server) -> None:
    rng = np.random.RandomState(0)
    xs = [rng.rand(1 + i % 3, 4 + (i % 2)).astype(np.float32) for i in range(24)]
    checks = [np.arange(i, i + 3, dtype=np.int32) for i in range(6)]
    bodies = [protocol.encode_request({"x": x}) for x in xs] + \
        [protocol.encode_request({"x": c}, signature_name="check") for c in checks]
    alone = [requests.post(server.url + "/", data=b, timeout=60).content for b in bodies]
    # whether a burst's requests meet in one call depends on how they reach the loop: up to
    # five bursts, every answer checked in each, until one shows a call of several requests
    for _ in range(5):
        before = scrape(server.url)
        got = send_all(server.url, bodies)
        after = scrape(server.url)
        biggest = 0
        for i, (status, body, headers) in enumerate(got):
            assert status == 200, body
            out = protocol.decode_response(body)
            if i < len(xs):
                np.testing.assert_allclose(out["y"], softmax(xs[i]), rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(out["y"], protocol.decode_response(alone[i])["y"],
                                           rtol=1e-6)
                biggest = max(biggest, int(out["rows"][0]))
                assert out["rows"].shape == (xs[i].shape[0],)
            else:
                np.testing.assert_array_equal(out["y"], checks[i - len(xs)] * 2)
            timing = headers["Server-Timing"]
            assert all(f"{k};dur=" in timing for k in ("queue", "decode", "model", "encode"))
        ok = (":tensorflow:serving:request_count_total", (("protocol", "eas"), ("status", "200")))
        assert after[ok] - before[ok] == len(bodies)  # the scrape itself is not counted
        if biggest > 3:
            break
    assert biggest > 3  # some call carried more than one request's rows
    sizes = ":tensorflow:serving:batching_session:processed_batch_size_count"
    calls = after[(sizes, ())] - before[(sizes, ())]
    assert calls < len(bodies)  # fewer model calls than requests


def test_a_bad_request_in_a_burst_fails_alone(server: Server) -> None:
    xs = [np.full((1, 4), i, np.float32) for i in range(12)]
    bodies = [protocol.encode_request({"x": x}) for x in xs]
    bodies += [protocol.encode_request({"x": np.array([1, -1], np.int32)}, signature_name="check"),
               protocol.encode_request({"x": np.array([5], np.int32)}, signature_name="check"),
               b"\x0a\xff\xff\xff",  # a truncated protobuf
               protocol.encode_request({"x": np.ones((1, 4), np.int32)})]  # wrong dtype
    got = send_all(server.url, bodies)
    for i, x in enumerate(xs):
        assert got[i][0] == 200
        np.testing.assert_allclose(protocol.decode_response(got[i][1])["y"], softmax(x), rtol=1e-5)
    assert got[12][0] == 400 and b"x must be >= 0" in got[12][1]
    assert got[13][0] == 200 and list(protocol.decode_response(got[13][1])["y"]) == [10]
    assert got[14][0] == 400 and got[15][0] == 400
    assert got[15][1][-1:] == b"\n" and got[15][1].count(b"\n") == 1


def test_shapes_other_than_declared_run_alone_in_a_burst(server: Server) -> None:
    """``x`` is declared [None, None]: rank-1 and rank-3 requests reach the model (as TF
    Serving lets them) but never share its call with others' rows; a rank-2 ``check`` input
    (declared [None]) the model refuses fails alone."""
    rng = np.random.RandomState(1)
    xs = [rng.rand(1, 4).astype(np.float32) for _ in range(10)] + \
        [rng.rand(4).astype(np.float32) for _ in range(3)] + \
        [rng.rand(1, 1, 4).astype(np.float32) for _ in range(2)]
    bodies = [protocol.encode_request({"x": x}) for x in xs] + \
        [protocol.encode_request({"x": np.array([[1, 2]], np.int32)}, signature_name="check")]
    alone = [protocol.decode_response(requests.post(server.url + "/", data=b, timeout=60).content)
             for b in bodies[:len(xs)]]
    got = send_all(server.url, bodies)
    for i, x in enumerate(xs):
        assert got[i][0] == 200, got[i][1]
        out = protocol.decode_response(got[i][1])
        assert out["y"].shape == x.shape
        np.testing.assert_allclose(out["y"], alone[i]["y"], rtol=1e-6)
        if x.ndim != 2:  # its own call: rows says its own first dimension
            assert list(out["rows"]) == [x.shape[0]] * x.shape[0]
    assert got[-1][0] == 400 and got[-1][1].count(b"\n") == 1
    assert b"the model rejected the input" in got[-1][1], got[-1][1]


def test_output_without_batch_dimension_is_never_split_wrongly(server: Server) -> None:
    xs = [np.arange(1 + i % 4, dtype=np.float32) + i for i in range(16)]
    for _ in range(2):
        got = send_all(server.url, [protocol.encode_request({"x": x}, signature_name="flat")
                                    for x in xs])
        for x, (status, body, _) in zip(xs, got):
            assert status == 200
            assert float(protocol.decode_response(body)["y"]) == pytest.approx(float(x.sum()))
    assert server.log().count("do not keep the batch dimension") <= 1
