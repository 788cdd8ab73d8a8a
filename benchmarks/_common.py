"""Helpers shared by the benchmarks: protobuf's generated code, timing, a loopback load loop."""

from __future__ import annotations

import http.client
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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

    seconds = in_threads(worker, threads)
    if errors:
        raise RuntimeError(errors[0])
    return len(lat) / seconds, sorted(lat)


def in_threads(fn: Callable[[], None], n: int) -> float:
    """``fn`` in ``n`` threads at once: seconds until the last one ends."""
    t0 = time.perf_counter()
    ts = [threading.Thread(target=fn) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: Sequence[str], env: Dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """A server in its own process group (stopped with ``stop``), quiet."""
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", LOG_LEVEL="WARNING", **env)
    proc = subprocess.Popen(list(argv), env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    proc.port = port  # type: ignore[attr-defined]
    return proc


def post(port: int, path: str, body: bytes, headers: Optional[Dict[str, str]] = None) -> int:
    """One POST on a fresh connection: its status (OSError while nothing listens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_ok(port: int, path: str, body: bytes, headers: Optional[Dict[str, str]] = None,
            timeout: float = 180.0) -> None:
    """Until the server answers 200 to this request twenty times in a row."""
    deadline = time.monotonic() + timeout
    ok = 0
    while ok < 20:
        try:
            ok = ok + 1 if post(port, path, body, headers) == 200 else 0
        except OSError:
            ok = 0
        if ok == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on {port} never answered 200 on {path}")
            time.sleep(0.3)


def write_result(name: str, text: str) -> None:
    """Print a benchmark's report and keep it as ``benchmarks/results/<name>``."""
    print(text)
    results = os.path.join(ROOT, "benchmarks", "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, name), "w", encoding="utf-8") as f:
        f.write(text)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def group_rss_mb(pid: int) -> float:
    """Resident memory of a server's whole process group (master and workers), MB."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pid:  # process group
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024
