"""gRPC under load and abuse, against a real ``tfserverless serve`` with a slow model: a full
queue is RESOURCE_EXHAUSTED, RPC_KEEPALIVE and the client's own deadline are
DEADLINE_EXCEEDED, a call cancelled or timed out while queued never reaches the model (the
model counts its runs), oversized metadata and many concurrent streams leave it serving."""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest

from tfserverless.platforms.grpc import MAX_STREAMS
from tfserverless.server import worker_class

from ..conftest import Server

HEALTH = "/grpc.health.v1.Health/Check"


@pytest.fixture(scope="module")
def server(models: Dict[str, str]) -> Iterator[Server]:
    if worker_class() is None:
        pytest.skip("no uvicorn worker here: gRPC is refused (test_grpc)")
    if importlib.util.find_spec("tensorflow_serving") is None:
        pytest.skip("TF Serving's client (tensorflow-serving-api) is not installed here")
    s = Server({"MODEL_PATH": models["slow"], "RPC_WORKER_THREADS": "1",
                "RPC_MAX_QUEUE_SIZE": "1", "RPC_KEEPALIVE": "2500"}, grpc=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[Any]:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    ch = grpc.insecure_channel(server.grpc)
    yield prediction_service_pb2_grpc.PredictionServiceStub(ch)
    ch.close()


def wait_request(ms: float) -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "slow"
    req.model_spec.signature_name = "wait"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    req.inputs["ms"].CopyFrom(tf.make_tensor_proto(np.float64(ms)))
    return req


def calls(stub: Any) -> int:
    import tensorflow as tf

    resp = stub.Predict(wait_request(0), timeout=60)
    return int(tf.make_ndarray(resp.outputs["calls"]))


class InThread:
    """``fn(*args, **kw)`` running in a thread; ``result`` waits for what it returned (or
    raised).  The thread and the result are apart: a list holding both (the thread appended
    after it started) had the result at [-1] once a call ended quickly, and [0] the thread."""

    def __init__(self, fn: Any, *args: Any, **kw: Any) -> None:
        self.out: List[Any] = []

        def go() -> None:
            try:
                self.out.append(fn(*args, **kw))
            except Exception as e:
                self.out.append(e)

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not end"
        return self.out[0]


def code(e: Any) -> Optional[str]:
    return e.code().name if hasattr(e, "code") else None


def test_full_queue_is_resource_exhausted_and_keepalive_deadline_exceeded(stub: Any) -> None:
    before = calls(stub)
    busy = InThread(stub.Predict, wait_request(1500), timeout=60)
    time.sleep(0.4)  # the one worker thread is in the model
    queued = InThread(stub.Predict, wait_request(0), timeout=60)
    time.sleep(0.3)  # the one queue place is taken
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(wait_request(0), timeout=60)
    assert e.value.code().name == "RESOURCE_EXHAUSTED"
    assert "450" in e.value.details() or "queue" in e.value.details().lower()
    for call in (busy, queued):
        got = call.result()
        assert not isinstance(got, Exception), got
    # a call that cannot be answered within RPC_KEEPALIVE (2.5 s): DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(wait_request(4000), timeout=60)
    assert e.value.code().name == "DEADLINE_EXCEEDED" and "RPC_KEEPALIVE" in e.value.details()
    time.sleep(2.0)  # the model call runs to its end (it cannot be stopped)
    assert calls(stub) == before + 3 + 1


def test_a_call_cancelled_or_timed_out_in_the_queue_never_reaches_the_model(stub: Any) -> None:
    import grpc

    time.sleep(0.5)
    before = calls(stub)
    busy = InThread(stub.Predict, wait_request(1500), timeout=60)
    time.sleep(0.4)
    # queued behind it with a client deadline shorter than the wait
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(wait_request(0), timeout=0.5)
    assert e.value.code().name == "DEADLINE_EXCEEDED"
    time.sleep(0.2)
    fut = stub.Predict.future(wait_request(0), timeout=60)  # queued, then cancelled
    time.sleep(0.3)
    fut.cancel()
    got = busy.result()
    assert not isinstance(got, Exception), got
    # only the busy call (and the counting calls) ran
    assert calls(stub) == before + 1 + 1


def test_oversized_metadata_and_many_streams_leave_it_serving(server: Server) -> None:
    import grpc

    target = server.grpc
    with grpc.insecure_channel(target) as ch:
        health = ch.unary_unary(HEALTH)
        with pytest.raises(grpc.RpcError) as e:
            health(b"", timeout=30, metadata=(("x-big", "a" * (64 << 10)),))
        assert e.value.code().name in ("RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE")
    # more streams at once on one connection than it may open (MAX_STREAMS), and as many on
    # several connections: each is answered, or refused with a status (HTTP/2's
    # REFUSED_STREAM: UNAVAILABLE, which gRPC clients may retry), and the server goes on serving
    with grpc.insecure_channel(target) as ch:
        health = ch.unary_unary(HEALTH)
        one = outcomes([health.future(b"", timeout=60) for _ in range(MAX_STREAMS + 200)])
    channels = [grpc.insecure_channel(target) for _ in range(8)]
    try:
        several = outcomes([ch.unary_unary(HEALTH).future(b"", timeout=60)
                            for ch in channels for _ in range(MAX_STREAMS // 2)])
    finally:
        for ch in channels:
            ch.close()
    for got in (one, several):
        assert set(got) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, set(got)
        assert got.count("OK") >= len(got) // 4, got.count("OK")
    with grpc.insecure_channel(target) as ch:
        assert ch.unary_unary(HEALTH)(b"", timeout=30) == b"\x08\x01"


def outcomes(futures: List[Any]) -> List[str]:
    import grpc

    out: List[str] = []
    for f in futures:
        try:
            out.append("OK" if f.result() == b"\x08\x01" else "wrong reply")
        except grpc.RpcError as err:
            out.append(err.code().name)
    return out
