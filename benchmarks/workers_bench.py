"""How many workers a model can have: the memory one worker takes, and whether a second
worker serves a large model any faster.

1. Peak RSS (``VmHWM`` of the worker process) of one worker serving (``tfserverless serve``,
   ``WORKERS=1``, local ``MODEL_PATH``) the sample MNIST and three models built by
   ``big_model.py`` (128 MB, 512 MB, 1 GiB of weights), after loading and a few seconds of
   batch-32 requests; fitted to ``base + k x model bytes`` (least squares), the constants
   ``tfserverless.sizing`` uses.
2. ``WORKERS=1`` against ``WORKERS=2`` on the same model (both servers up, rounds
   interleaved, best of each): throughput and p50/p99 at several concurrent clients, on the
   128 MB model (batch 1), the 512 MB and 1 GiB ones (batch 32: compute-bound) and on MNIST
   (batch 1: bound by Python's per-request work; and batch 32).  The ratio printed is 2
   workers / 1 worker, measured in this run.

Writes ``benchmarks/results/workers.md``.  ``BENCH_SECONDS`` (3) per measurement,
``BENCH_ROUNDS`` (4).  Takes about 7 minutes on a 2-core machine, most of it the load.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
from _common import ROOT, free_port, spawn, stop, write_result
from _load import load, percentile

from tfserverless import protocol
from tfserverless.sizing import model_bytes, per_worker

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SIZES_MB = (128, 512, 1024)
HERE = os.path.dirname(os.path.abspath(__file__))

Model = Tuple[str, str, int]  # name, path, input width (0: MNIST)


def build_models(out: str) -> List[Model]:
    mnist = os.path.join(out, "mnist")
    subprocess.run([sys.executable, os.path.join(ROOT, "samples", "build_mnist.py"), mnist],
                   check=True, capture_output=True)
    models: List[Model] = [("mnist", mnist, 0)]
    for mb in SIZES_MB:
        path = os.path.join(out, f"big{mb}")
        done = subprocess.run([sys.executable, os.path.join(HERE, "big_model.py"), str(mb),
                               path], check=True, capture_output=True, text=True)
        models.append((f"{mb} MB" if mb < 1024 else "1 GiB", path, int(done.stdout.split()[-1])))
    return models


def body(model: Model, rows: int) -> bytes:
    width = model[2]
    x = np.random.RandomState(rows).rand(rows, width or 784).astype(np.float32)
    if not width:
        return protocol.encode_request({"images": x}, signature_name="predict_images")
    return protocol.encode_request({"x": x})


def start(model: Model, workers: int) -> subprocess.Popen[bytes]:
    port = free_port()
    argv = [sys.executable, "-m", "tfserverless", "serve", "--host", "127.0.0.1", "--port",
            str(port)]
    return spawn(argv, {"MODEL_PATH": model[1], "WORKERS": str(workers)}, port)


def loaded(port: int) -> int:
    """Workers whose model loaded, from the instance's metrics (every worker's row)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    key = ':tensorflow:cc:saved_model:load_attempt_count{status="success"} '
    return next((int(line[len(key):]) for line in text.splitlines() if line.startswith(key)), 0)


def wait_loaded(proc: subprocess.Popen[bytes], workers: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if loaded(proc.port) >= workers:  # type: ignore[attr-defined]
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server exited or never loaded {workers} workers")
        time.sleep(0.3)


def children(pid: int) -> List[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def hwm_mb(pid: int) -> float:
    """Peak resident memory of one process (``VmHWM``), MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def peak_rss(models: List[Model]) -> List[Tuple[str, int, float, float]]:
    """(model, its bytes on disk, the worker's peak RSS MB, the master's) per model."""
    out = []
    for model in models:
        proc = start(model, 1)
        try:
            wait_loaded(proc, 1)
            rows = 32 if model[2] else 1
            load(proc.port, "/", body(model, rows), concurrency=4, seconds=3)  # type: ignore[attr-defined]
            (worker,) = children(proc.pid)
            out.append((model[0], model_bytes(model[1])[0], hwm_mb(worker), hwm_mb(proc.pid)))
        finally:
            stop(proc)
        print(f"peak RSS {out[-1][0]}: {out[-1][2]:,.0f} MB worker, {out[-1][3]:,.0f} MB master")
    return out


def fit(points: List[Tuple[str, int, float, float]]) -> Tuple[float, float]:
    """(base MB, k) of ``rss = base + k x model MB`` by least squares."""
    x = np.array([p[1] / 1e6 for p in points])
    y = np.array([p[2] for p in points])
    k, base = np.polyfit(x, y, 1)
    return float(base), float(k)


Result = Tuple[float, float, float]  # req/s, p50 ms, p99 ms


def compare(model: Model, rows: int, clients: Tuple[int, ...]) -> Dict[Tuple[int, int], Result]:
    """(workers, clients) -> best of ROUNDS interleaved rounds."""
    procs = {w: start(model, w) for w in (1, 2)}
    res: Dict[Tuple[int, int], Result] = {}
    try:
        for w, p in procs.items():
            wait_loaded(p, w)
        data = body(model, rows)
        for p in procs.values():  # the first calls of each worker are slow: not measured
            load(p.port, "/", data, concurrency=4, seconds=1)  # type: ignore[attr-defined]
        for _ in range(ROUNDS):
            for c in clients:
                for w, p in procs.items():
                    rps, lat = load(p.port, "/", data, concurrency=c, seconds=SECONDS)  # type: ignore[attr-defined]
                    if rps > res.get((w, c), (0.0, 0.0, 0.0))[0]:
                        res[(w, c)] = (rps, percentile(lat, 0.5) * 1e3,
                                       percentile(lat, 0.99) * 1e3)
        mem = {w: sum(hwm_mb(pid) for pid in children(p.pid)) for w, p in procs.items()}
    finally:
        for p in procs.values():
            stop(p)
    for w, mb in mem.items():
        res[(w, 0)] = (mb, 0.0, 0.0)  # workers' peak RSS, summed
    return res


def main() -> None:
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="workers-bench-")
    models = build_models(work)
    cores = len(os.sched_getaffinity(0))
    lines = ["# Workers per instance (benchmarks/workers_bench.py)", "",
             f"{cores} cores shared by the server and the load client; `tfserverless serve`, "
             "local MODEL_PATH, defaults otherwise (RPC_WORKER_THREADS 5, TensorFlow's "
             "intra-op threads on every core, batching off).", "",
             "## Peak RSS of one worker", "", "After loading and 3 s of requests at 4 clients "
             "(batch 32; MNIST batch 1). MB = 10^6 bytes.", "",
             "| model | bytes on disk | worker VmHWM MB | master VmHWM MB | sizing's estimate "
             "MB |", "|---|---|---|---|---|"]
    points = peak_rss(models)
    for name, nbytes, worker, master in points:
        lines.append(f"| {name} | {nbytes:,} | {worker:,.0f} | {master:,.0f} | "
                     f"{per_worker(nbytes) / 1e6:,.0f} |")
    base, k = fit(points)
    worst = max(p[2] - (base + k * p[1] / 1e6) for p in points)
    lines += ["", f"Least squares: RSS = {base:,.0f} MB + {k:.3f} x model MB (largest "
              f"residual above the line {worst:+,.0f} MB).", ""]
    print(lines[-2])
    # the 128 MB model at batch 1 is the large model's case most in favour of a second worker
    # (the least model work per request of Python's)
    plans = [(models[1], 1, (1, 4, 16)), (models[2], 32, (1, 4, 16)), (models[3], 32, (1, 4)),
             (models[0], 1, (1, 16, 64)), (models[0], 32, (16,))]
    lines += ["## One worker against two", "", f"Best of {ROUNDS} interleaved {SECONDS:g} s "
              "rounds; ratio = WORKERS=2 / WORKERS=1 in this run.", "",
              "| model | rows | clients | 1 worker req/s (p50 / p99 ms) | 2 workers req/s "
              "(p50 / p99 ms) | ratio |", "|---|---|---|---|---|---|"]
    for model, rows, clients in plans:
        res = compare(model, rows, clients)
        for c in clients:
            one, two = res[(1, c)], res[(2, c)]
            line = (f"| {model[0]} | {rows} | {c} | {one[0]:,.1f} ({one[1]:.1f} / {one[2]:.1f}) "
                    f"| {two[0]:,.1f} ({two[1]:.1f} / {two[2]:.1f}) | {two[0] / one[0]:.2f}x |")
            lines.append(line)
            print(f"RATIO {model[0]} batch {rows}, {c} clients: 2 workers / 1 = "
                  f"{two[0] / one[0]:.2f}x throughput, p99 {two[2]:.1f} vs {one[2]:.1f} ms")
        lines.append(f"| {model[0]} | | workers' peak RSS | {res[(1, 0)][0]:,.0f} MB | "
                     f"{res[(2, 0)][0]:,.0f} MB | |")
    lines += ["", f"Run took {time.monotonic() - t0:.0f} s; load average (1 min) {load0:.1f} at "
              f"the start, {os.getloadavg()[0]:.1f} at the end (anything above ~1 at the "
              "start is another process competing for the cores).", ""]
    write_result("workers.md", "\n".join(lines))


if __name__ == "__main__":
    main()
