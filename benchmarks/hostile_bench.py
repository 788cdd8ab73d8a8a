"""Hostile bodies on the JSON, V2-binary and compressed-body surfaces, before and after.

"Before" is the engine at commit BEFORE (checked out into a temporary git worktree), "after"
this checkout; both are ``tfserverless serve`` with one worker on the sample MNIST, with a
token.  For each probe: the status, the time to answer it and the worker's peak resident
memory above where it stood (VmHWM, reset through /proc/<pid>/clear_refs before each probe).
Then three scenarios: eight connections that declare 64 MiB bodies and send nothing, and 30
and 100 clients looping on an 8 KB gzip that inflates to 8 MiB of JSON; for each, an
authorised request's status and latency meanwhile (one every 0.2 s for 6 s).

Targets (issue 23): no 500; nothing allocated from a declared shape or length; a valid
request served (200) within a bounded latency during both scenarios.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from _common import ROOT, free_port, spawn, stop, write_result

BEFORE = "7f4fdf2"
TOKEN = "bench-token"
MODEL = os.path.join(ROOT, "samples", "mnist")
VALID = json.dumps({"signature_name": "predict_images", "instances": [[0.5] * 784]}).encode()


def v2_bytes(shape: List[int], data: bytes, size: Optional[int] = None) -> Tuple[bytes, Dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": shape,
                                   "parameters": {"binary_data_size": len(data) if size is None
                                                  else size}}]}).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def probes() -> Dict[str, Tuple[str, bytes, Dict[str, str]]]:
    """name -> (path, body, headers)"""
    tfs, v2 = "/v1/models/mnist:predict", "/v2/models/mnist/infer"
    empty_lists = b'{"instances": [' + b"[]," * ((8 << 20) // 3 - 10) + b"[]]}"
    ones = b"".join([struct.pack("<I", 1) + b"a"] * ((60 << 20) // 5))
    big_bytes, big_headers = v2_bytes([len(ones) // 5], ones)
    gz = {"Content-Encoding": "gzip"}
    out = {
        "V2 BYTES shape [2^27], no data (419 B)": (v2, *v2_bytes([1 << 27], b"", 0)),
        "V2 BYTES shape [2^36], no data": (v2, *v2_bytes([1 << 36], b"", 0)),
        "V2 BYTES shape [2^39, 2^39]": (v2, *v2_bytes([1 << 39, 1 << 39], b"", 0)),
        "TFS 8 KB gzip -> 8 MiB of []": (tfs, gzip.compress(empty_lists), gz),
        "TFS 16 MiB JSON + I-H-C-L: 0": (tfs, b'{"instances": [' + b"0.5," * (4 << 20) + b"0.5]}",
                                         {"Inference-Header-Content-Length": "0"}),
        "TFS 1 MB gzip bomb": (tfs, gzip.compress(b" " * (1 << 30), 9), gz),
        "V2 gzip of 60 MiB 1-byte BYTES": (v2, gzip.compress(big_bytes, 9), {**big_headers, **gz}),
    }
    return out


def request(port: int, path: str, body: bytes, headers: Dict[str, str],
            timeout: float = 120, source: str = "127.0.0.1") -> Tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, body=body, headers={"Authorization": TOKEN, **headers})
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0
    except OSError:
        return -1, time.perf_counter() - t0
    finally:
        conn.close()


def valid(port: int) -> Tuple[int, float]:
    """An honest client's request, from an address of its own (the abusers share another)."""
    return request(port, "/v1/models/mnist:predict", VALID, {}, timeout=60, source="127.0.0.2")


def worker_pid(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz", headers={"Authorization": TOKEN})
    return int(json.loads(conn.getresponse().read())["pid"])


def memory(pid: int) -> Dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                if k in ("VmRSS", "VmHWM")}


def probe(port: int, pid: int, path: str, body: bytes, headers: Dict[str, str]) -> str:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = memory(pid)["VmRSS"]
    status, took = request(port, path, body, headers)
    peak = memory(pid)["VmHWM"] - base
    return f"{status:>4} {took * 1e3:8.0f} ms {peak / 1024:+8.0f} MB"


def during(port: int, load: Callable[[threading.Event], None], clients: int) -> str:
    """An authorised request every 0.2 s while ``clients`` run ``load``: statuses, p50, max."""
    stop_ev = threading.Event()
    threads = [threading.Thread(target=load, args=(stop_ev,)) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    got: List[Tuple[int, float]] = []
    t_end = time.monotonic() + 6
    while time.monotonic() < t_end:
        got.append(valid(port))
        time.sleep(0.2)
    stop_ev.set()
    for t in threads:
        t.join()
    lat = sorted(g[1] for g in got)
    ok = sum(g[0] == 200 for g in got)
    return (f"{ok}/{len(got)} valid 200, p50 {lat[len(lat) // 2] * 1e3:.0f} ms, "
            f"max {lat[-1] * 1e3:.0f} ms")


def stalled(port: int) -> Callable[[threading.Event], None]:
    def load(stop_ev: threading.Event) -> None:
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nAuthorization: "
                  + TOKEN.encode() + b"\r\nContent-Length: 67108864\r\n\r\n")
        stop_ev.wait()
        c.close()
    return load


def inflating(port: int, body: bytes, seen: Dict[int, int]) -> Callable[[threading.Event], None]:
    def load(stop_ev: threading.Event) -> None:
        while not stop_ev.is_set():
            status, _ = request(port, "/v1/models/mnist:predict", body,
                                {"Content-Encoding": "gzip"}, 30)
            seen[status] = seen.get(status, 0) + 1  # a race only blurs a count
    return load


def run(src: str, label: str) -> List[str]:
    port = free_port()
    env = {"MODEL_PATH": MODEL, "WORKERS": "1", "SERVICE_TOKEN": TOKEN,
           "PYTHONPATH": os.path.join(src, "src")}
    proc = spawn([sys.executable, "-m", "tfserverless", "serve", "--host", "127.0.0.1",
                  "--port", str(port)], env, port)
    rows = [f"== {label}"]
    try:
        deadline = time.monotonic() + 120
        while valid(port)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: server never ready")
            time.sleep(0.3)
        pid = worker_pid(port)
        for name, (path, body, headers) in probes().items():
            rows.append(f"  {name:40s} {len(body):>9} B {probe(port, pid, path, body, headers)}")
        rows.append(f"  {'8 stalled 64 MiB declarations':40s} {during(port, stalled(port), 8)}")
        bomb = probes()["TFS 8 KB gzip -> 8 MiB of []"][1]
        for clients in (30, 100):
            seen: Dict[int, int] = {}
            got = during(port, inflating(port, bomb, seen), clients)
            rows.append(f"  {f'{clients} clients looping the 8 KB gzip':40s} {got}; theirs: "
                        + ", ".join(f"{n} x {k}" for k, n in sorted(seen.items())))
    finally:
        stop(proc)
    return rows


def main() -> int:
    work = tempfile.mkdtemp(prefix="hostile-")
    before = os.path.join(work, "before")
    try:
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", before, BEFORE],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = ["status, time to answer, worker peak RSS above its resting size"]
        rows += run(before, f"before ({BEFORE})")
        rows += run(ROOT, "after (this checkout)")
        write_result("hostile.md", "```\n" + "\n".join(rows) + "\n```\n")
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
