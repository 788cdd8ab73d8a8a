"""Overload and stalls: our admission control against today's behaviour, in one run.

"Today's behaviour" is the engine as it was before admission control (commit BEFORE, checked
out into a temporary git worktree and served by the same functions-framework), so both sides
run the same model on the same server stack.

(a) 2x overload: a model calibrated to ~100 ms a call, offered twice what it sustains by
    open-loop clients that give up after 2 s (as the EAS SDK's 5 s default would, sooner).
    Printed: goodput (200s within the client's timeout, per second), p50/p99 latency of the
    admitted requests, the shed fraction (450/408), client timeouts, and how long a fresh
    request takes right after the burst.
(b) /healthz latency while the model load is stuck (an S3 endpoint that accepts TCP and never
    answers) and 8 predicts wait for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import requests
from _common import ROOT

from tfserverless import protocol

BEFORE = "1d05199"  # main before issue 10
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CLIENT_TIMEOUT = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Srv:
    def __init__(self, src: str, env: Dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", LOG_LEVEL="WARNING", **env)
        full["PYTHONPATH"] = os.path.join(src, "src")
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "functions-framework"), "--source",
             os.path.join(src, "handler", "main.py"), "--target", "predict", "--host", "127.0.0.1",
             "--port", str(self.port)], env=full, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def ready(self, status: int = 200) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == status:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def body(n: int) -> bytes:
    return protocol.encode_request({"x": np.array([1.0], np.float32), "n": np.array(n, np.int32)})


def post(url: str, data: bytes, timeout: float) -> Tuple[int, float]:
    t0 = time.monotonic()
    try:
        return requests.post(url + "/", data=data, timeout=timeout).status_code, time.monotonic() - t0
    except requests.RequestException:
        return -1, time.monotonic() - t0


def calibrate(url: str, seconds: float) -> int:
    n = 100
    for _ in range(4):
        took = min(post(url, body(n), 30)[1] for _ in range(3))
        n = max(1, int(n * seconds / took))
    return n


def offered(url: str, data: bytes, rate: float, seconds: float) -> List[Tuple[int, float]]:
    """Open loop: a request every 1/rate s whatever came back, each its own client."""
    out: List[Tuple[int, float]] = []
    lock = threading.Lock()
    threads = []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        def one() -> None:
            r = post(url, data, CLIENT_TIMEOUT)
            with lock:
                out.append(r)
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)
        i += 1
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    for t in threads:
        t.join()
    return out


def report(name: str, results: List[Tuple[int, float]], seconds: float, fresh: float) -> Dict[str, float]:
    ok = sorted(t for s, t in results if s == 200 and t <= CLIENT_TIMEOUT)
    shed = sum(1 for s, _ in results if s in (408, 429, 450))
    gone = sum(1 for s, _ in results if s == -1)
    other = sum(1 for s, _ in results if s not in (200, 408, 429, 450, -1))
    p = (lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] * 1e3) if ok else (lambda q: float("nan"))
    row = {"goodput": len(ok) / seconds, "p50": p(0.5), "p99": p(0.99),
           "shed": shed / len(results), "timeouts": gone / len(results), "fresh": fresh}
    print(f"{name:34s} goodput {row['goodput']:5.1f}/s  p50 {row['p50']:6.0f} ms  p99 "
          f"{row['p99']:6.0f} ms  shed {100 * row['shed']:4.1f}%  client timeouts "
          f"{100 * row['timeouts']:4.1f}%  other {other}  fresh request after {fresh:5.2f}s")
    return row


def overload(src: str, name: str, model: str, env: Dict[str, str],
             n: Optional[int]) -> Tuple[int, Dict[str, float]]:
    s = Srv(src, dict(env, MODEL_PATH=model, TF_INTRA_OP_THREADS="1"))
    try:
        s.ready()
        n = n or calibrate(s.url, 0.1)
        capacity = 2 / 0.1  # two cores, ~100 ms a call
        results = offered(s.url, body(n), 2 * capacity, SECONDS)
        status, fresh = post(s.url, body(n), 120)
        return n, report(name, results, SECONDS, fresh if status == 200 else float("nan"))
    finally:
        s.stop()


def stuck_health(src: str, name: str) -> float:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(128)
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    s = Srv(src, {"MODEL_PATH": "s3://bucket/m.tar.gz", "MODEL_CACHE_DIR": cache,
                  "S3_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
                  "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    try:
        s.ready(status=503)
        for _ in range(8):
            threading.Thread(target=post, args=(s.url, b"\x0a\x00", 30), daemon=True).start()
        time.sleep(1.0)
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            try:
                requests.get(s.url + "/healthz", timeout=5)
                worst = max(worst, time.monotonic() - t0)
            except requests.RequestException:
                worst = max(worst, float("inf"))
        print(f"{name:34s} /healthz worst of 5 during a stuck load: "
              f"{'timed out (5 s)' if worst == float('inf') else f'{worst * 1e3:.1f} ms'}")
        return worst
    finally:
        s.stop()
        silent.close()
        shutil.rmtree(cache, ignore_errors=True)


def main() -> int:
    work = tempfile.mkdtemp(prefix="overload-bench-")
    try:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "models.py"), work, "slow"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        model = os.path.join(work, "slow")
        before = os.path.join(work, "before")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", before, BEFORE],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"(a) 2x overload for {SECONDS:.0f}s, ~100 ms model, clients time out at "
              f"{CLIENT_TIMEOUT:.0f}s")
        n, old = overload(before, f"before ({BEFORE}, no admission)", model, {}, None)
        _, ours = overload(ROOT, "ours, EAS defaults + RPC_KEEPALIVE=2000", model,
                           {"RPC_KEEPALIVE": "2000"}, n)
        _, small = overload(ROOT, "ours, 2 workers, queue 4", model,
                            {"RPC_KEEPALIVE": "2000", "RPC_WORKER_THREADS": "2",
                             "RPC_MAX_QUEUE_SIZE": "4"}, n)
        for label, row in (("EAS defaults", ours), ("queue 4", small)):
            print(f"  {label}: goodput {row['goodput'] / max(old['goodput'], 1e-9):.1f}x before, p99 of "
                  f"admitted {row['p99']:.0f} ms vs {old['p99']:.0f} ms, shed {100 * row['shed']:.0f}%")
        print("(b) readiness during a stuck model load, 8 predicts waiting")
        hb = stuck_health(before, f"before ({BEFORE})")
        ha = stuck_health(ROOT, "ours")
        print(f"  /healthz: {'timed out' if hb == float('inf') else f'{hb * 1e3:.0f} ms'} before, "
              f"{ha * 1e3:.1f} ms now")
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", os.path.join(work, "before")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
