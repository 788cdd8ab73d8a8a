"""The first request after warm-up against the ones after it, client side (issue #25's
target: the first <= 1.5x the median).

Starts ``tfserverless serve`` (one worker: the ASGI path ``make serve`` and the Cloud Run
image run) on the sample model ``RUNS`` times with a one-request EAS warm-up file, and once
without warm-up (the baseline); after ``/healthz`` says ready, sends the same batch-1 EAS
request, each on a new connection as the SDK's first call is: the first, then ``N`` more
``GAP`` seconds apart (as the first came after an idle gap: any request after 20 ms or more
of idleness costs ~2x one sent back to back, measured with Server-Timing: decode, model and
encode all slower, so that is the like-for-like median), then ``N`` back to back.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
from _common import ROOT, write_result

from tfserverless import protocol

MODEL = os.environ.get("MODEL_PATH") or os.path.join(ROOT, "samples", "mnist")
RUNS, N, GAP = 3, 20, 0.1
BODY = protocol.encode_request({"images": np.random.RandomState(0).rand(1, 784).astype(np.float32)},
                               signature_name="predict_images")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(port: int, method: str, path: str, body: bytes = b"") -> Tuple[int, float]:
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body or None)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, time.perf_counter() - t0


def start(env: Dict[str, str]) -> Tuple[float, float, float]:
    """(first request's ms, median of N sent GAP apart, median of N back to back), client
    side."""
    port = _port()
    full = dict(os.environ, MODEL_PATH=MODEL, TF_CPP_MIN_LOG_LEVEL="2", WORKERS="1", **env)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "tfserverless"), "serve",
                             "--host", "127.0.0.1", "--port", str(port)], env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _call(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready in 180 s")
            time.sleep(0.1)
        times: List[float] = []
        for i in range(1 + 2 * N):
            if i <= N:
                time.sleep(GAP)
            status, seconds = _call(port, "POST", "/", BODY)
            assert status == 200, status
            times.append(seconds * 1e3)
        return times[0], statistics.median(times[1:N + 1]), statistics.median(times[N + 1:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    warm = tempfile.NamedTemporaryFile(suffix=".bin", delete=False)  # noqa: SIM115 - unlinked below
    warm.write(BODY)
    warm.close()
    try:
        base = start({"WARM_UP_COUNT": "0", "WARM_UP_DATA_PATH": ""})
        runs = [start({"WARM_UP_DATA_PATH": warm.name, "WARM_UP_COUNT": "5"}) for _ in range(RUNS)]
    finally:
        os.unlink(warm.name)
    lines: List[str] = []
    say = lines.append
    say(f"first request after ready, client side, `tfserverless serve` (1 worker), {MODEL}, "
        f"EAS batch 1, each on a new connection; medians of {N} sent {GAP * 1e3:.0f} ms apart "
        f"(as the first) and of {N} back to back")
    rows = [("no warm-up (baseline)", base)] + [(f"warm-up, start {i}", r)
                                                 for i, r in enumerate(runs, 1)]
    for name, (first, paced, tight) in rows:
        say(f"  {name:22s} first {first:6.2f} ms, median {paced:5.2f} ms ({first / paced:5.2f}x), "
            f"back to back {tight:5.2f} ms ({first / tight:5.2f}x)")
    worst = max(first / paced for first, paced, _ in runs)
    say(f"RATIO first/median with warm-up, worst of {RUNS} starts: {worst:.2f}x (target <= 1.5x; "
        f"without warm-up {base[0] / base[1]:.2f}x)")
    write_result("warmup.md", "```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
