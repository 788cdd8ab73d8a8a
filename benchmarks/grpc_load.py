"""A load client process for ``grpc_bench.py``: N threads, each with its own client, calling
one server back to back with the same request, the way each client's docs show it used.

``python grpc_load.py WAY`` with WAY one of

* ``triton``: ``tritonclient.grpc`` (runs in .venv-triton): an ``InferenceServerClient`` per
  thread (its docs: not thread safe), ``InferInput`` filled once, ``client.infer`` per call;
* ``tfs``: TF Serving's stock client (``tensorflow_serving.apis``): a channel and
  ``PredictionServiceStub`` per thread, the ``PredictRequest`` built once
  (``tf.make_tensor_proto``: ``tensor_content``), ``stub.Predict`` per call;
* ``eas``: EAS protobuf over HTTP/1.1 (the EAS SDK's wire format): the body encoded once
  (``tfserverless.protocol.encode_request``), a keep-alive ``http.client`` connection per
  thread.

So the timed loop holds only what a client does per call with a request it already has.
Commands come as JSON lines on stdin: {"target": "host:port", "model", "batch", "threads",
"seconds"}; for each, once the threads are connected and warmed up, the line ``go`` is
written, then the result: {"rps", "p50", "p99" (seconds), "cpu" (this process's CPU seconds
per wall second over the timed loop), "n"} or {"error"}.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, Dict, List

import numpy as np

WARMUP_CALLS = 10
READY_TIMEOUT = 120.0  # the first command may meet a server still loading


def images(batch: int) -> np.ndarray:
    return np.random.RandomState(batch).rand(batch, 784).astype(np.float32)


def triton_caller(target: str, model: str, batch: int) -> Callable[[], None]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=target)
    inp = grpcclient.InferInput("images", [batch, 784], "FP32")
    inp.set_data_from_numpy(images(batch))
    inputs = [inp]

    def call() -> None:
        client.infer(model, inputs)
    return call


def tfs_caller(target: str, model: str, batch: int) -> Callable[[], None]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = "predict_images"
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(images(batch)))

    def call() -> None:
        stub.Predict(req, timeout=60)
    return call


def eas_caller(target: str, model: str, batch: int) -> Callable[[], None]:
    import http.client

    from tfserverless import protocol

    host, port = target.rsplit(":", 1)
    body = protocol.encode_request({"images": images(batch)}, signature_name="predict_images")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def call() -> None:
        conn.request("POST", "/", body=body)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status} {data[:200]!r}")
    return call


CALLERS = {"triton": triton_caller, "tfs": tfs_caller, "eas": eas_caller}


def ready(make: Callable[[], Callable[[], None]]) -> Callable[[], None]:
    """A caller that has answered WARMUP_CALLS calls (retrying while the server comes up)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            call = make()
            for _ in range(WARMUP_CALLS):
                call()
            return call
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run(way: str, cmd: Dict[str, Any]) -> Dict[str, Any]:
    make = CALLERS[way]
    n = int(cmd["threads"])
    callers: List[Callable[[], None]] = []
    errors: List[str] = []
    lat: List[float] = []
    lock = threading.Lock()
    start: Dict[str, float] = {}

    def begin() -> None:  # the barrier's action: every thread connected and warmed up
        print("go", flush=True)
        start["cpu"] = time.process_time()
        start["wall"] = time.perf_counter()
        start["stop"] = time.monotonic() + float(cmd["seconds"])

    barrier = threading.Barrier(n, action=begin)

    def worker() -> None:
        mine: List[float] = []
        try:
            call = ready(lambda: make(cmd["target"], cmd["model"], int(cmd["batch"])))
            callers.append(call)
        except Exception as e:  # reported to the bench
            errors.append(f"not ready: {e!r}"[:300])
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        stop = start["stop"]
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                call()
                mine.append(time.perf_counter() - t0)
        except Exception as e:  # reported to the bench
            errors.append(repr(e)[:300])
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        if "wall" not in start:
            print("go", flush=True)
        return {"error": errors[0]}
    wall = time.perf_counter() - start["wall"]
    cpu = time.process_time() - start["cpu"]
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]  # noqa: E731
    return {"rps": len(lat) / wall, "p50": pct(0.5), "p99": pct(0.99), "cpu": cpu / wall,
            "n": len(lat)}


def main() -> None:
    way = sys.argv[1]
    if way == "tfs":  # TensorFlow's import, once, before the first command
        import tensorflow  # noqa: F401
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(way, json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
