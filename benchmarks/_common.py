"""Helpers shared by the benchmarks: protobuf's generated code, timing, a loopback load loop."""

from __future__ import annotations

import http.client
import importlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def predict_pb2() -> Any:
    """protobuf's generated code for proto/predict.proto (the 'obvious' baseline's codec)."""
    out = tempfile.mkdtemp(prefix="pb2-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/proto",
                    f"--python_out={out}", "predict.proto"], check=True)
    sys.path.insert(0, out)
    os.environ["PB2_DIR"] = out
    return importlib.import_module("predict_pb2")


def best_of(fn: Callable[[], Any], *, repeat: int = 7, number: int = 1) -> float:
    """Best mean seconds per call over ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def load(port: int, path: str, body: bytes, *, threads: int = 4, seconds: float = 5.0,
         headers: Dict[str, str] | None = None) -> Tuple[float, List[float]]:
    """Keep-alive POST loop from ``threads`` clients for ``seconds``: (requests/s, latencies)."""
    stop = time.monotonic() + seconds
    lat: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                errors.append(f"{r.status} {data[:200]!r}")
                break
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
        conn.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return len(lat) / (time.monotonic() - t0), sorted(lat)
