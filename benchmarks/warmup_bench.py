"""First-request latency of the sample model with and without warm-up (same run).

Starts the functions-framework server twice on the sample model, once with WARM_UP_COUNT=0
and once replaying a batch-64 .bin warm-up file 5 times, and times the first real request
(client side) and the server's own "first request" log line.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from _common import ROOT

from tfserverless import protocol

MODEL = os.environ.get("MODEL_PATH") or os.path.join(ROOT, "samples", "mnist")


def first_request(env: dict) -> tuple:  # type: ignore[type-arg]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115 - unlinked below
    full = dict(os.environ, MODEL_PATH=MODEL, TF_CPP_MIN_LOG_LEVEL="2", **env)
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "functions-framework"), "--source",
         os.path.join(ROOT, "handler", "main.py"), "--target", "predict", "--host", "127.0.0.1",
         "--port", str(port)], env=full, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        body = protocol.encode_request({"images": np.random.rand(64, 784).astype(np.float32)},
                                    signature_name="predict_images")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        c.request("POST", "/", body=body)
        r = c.getresponse()
        r.read()
        client_ms = (time.perf_counter() - t0) * 1e3
        assert r.status == 200
        time.sleep(0.3)
        with open(log.name, encoding="utf-8", errors="replace") as f:
            text = f.read()
        m = re.search(r"first request: ([\d.]+) ms", text)
        w = re.search(r"warm-up: .*", text)
        return client_ms, float(m.group(1)) if m else float("nan"), w.group(0) if w else ""
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        os.unlink(log.name)


def main() -> None:
    warm = tempfile.NamedTemporaryFile(suffix=".bin", delete=False)  # noqa: SIM115 - unlinked below
    warm.write(protocol.encode_request({"images": np.random.rand(64, 784).astype(np.float32)},
                                    signature_name="predict_images"))
    warm.close()
    try:
        cold = first_request({"WARM_UP_COUNT": "0"})
        hot = first_request({"WARM_UP_DATA_PATH": warm.name, "WARM_UP_COUNT": "5"})
    finally:
        os.unlink(warm.name)
    print(f"warm-up: sample model {MODEL}, first request batch 64")
    print(f"  without warm-up: client {cold[0]:7.1f} ms, server {cold[1]:7.1f} ms")
    print(f"  with warm-up:    client {hot[0]:7.1f} ms, server {hot[1]:7.1f} ms   ({hot[2]})")
    print(f"  RATIO first-request latency without/with warm-up: {cold[1] / hot[1]:.1f}x")


if __name__ == "__main__":
    main()
