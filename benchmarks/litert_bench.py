"""The litert_cpu processor against the TensorFlow one, same model (the sample MNIST), one run:

* cold start, process start -> first 200 (``tfserverless serve``, one worker, EAS protobuf):
  target LiteRT >= 10x faster; interleaved rounds, the median of each.  The engine's sources
  are byte-compiled first, as a wheel install leaves them (this checkout is an editable
  install, and this machine sets PYTHONDONTWRITEBYTECODE); then the Lambda zip's own cold
  start: a fresh Python 3.11 with only the layer, ``import main`` to the first API Gateway
  reply;
* throughput at batch 1 (16 clients) and batch 64 (4 clients), one worker each, batching off:
  reported; LiteRT must not be slower at batch 1;
* memory of each server once loaded, the installed size of each runtime (its distribution and
  every dependency it pulls in), and the Lambda zip layer (``layers/build --runtime litert``).

Appends nothing: writes ``benchmarks/results/litert.md``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from typing import Dict, List, Set, Tuple

import numpy as np
from _common import ROOT, free_port, group_rss_mb, post, spawn, stop, wait_ok, write_result
from _load import load, percentile

from tfserverless import protocol

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2.5"))
BIN = os.path.dirname(sys.executable)
LOADS = ((1, 16), (64, 4))  # (batch, clients)
LAMBDA_LIMIT = 250 * 1000 * 1000


def body(batch: int) -> bytes:
    x = np.random.RandomState(batch).rand(batch, 784).astype(np.float32)
    return protocol.encode_request({"images": x}, signature_name="predict_images")


def serve(model: str) -> Tuple[object, int]:
    port = free_port()
    argv = [os.path.join(BIN, "tfserverless"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return spawn(argv, {"MODEL_PATH": model, "WORKERS": "1", "RPC_BATCHING": "false"}, port), port


def cold_start(model: str) -> float:
    """Seconds from spawning the server to its first 200 (polled every 5 ms)."""
    req = body(1)
    t0 = time.perf_counter()
    proc, port = serve(model)
    try:
        while True:
            try:
                if post(port, "/", req) == 200:
                    return time.perf_counter() - t0
            except OSError:  # not listening yet
                pass
            if time.perf_counter() - t0 > 180:
                raise RuntimeError(f"{model} never answered")
            time.sleep(0.005)
    finally:
        stop(proc)  # type: ignore[arg-type]


LAMBDA_CALL = """
import base64, json, sys, time
import main  # what Lambda's init does
event = json.load(open(sys.argv[1]))
event["rawPath"], event["body"] = "/", base64.b64encode(open(sys.argv[2], "rb").read()).decode()
assert main.lambda_handler(event, None)["statusCode"] == 200
"""


def lambda_cold_start(layer: str, model: str) -> float:
    """A fresh Python 3.11 with only the layer and handler/: process start to the first reply."""
    python = subprocess.run(["pyenv", "which", "python"], env=dict(os.environ, PYENV_VERSION="3.11.7"),
                            capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.NamedTemporaryFile(suffix=".bin") as req:
        req.write(body(1))
        req.flush()
        t0 = time.perf_counter()
        subprocess.run([python, "-c", LAMBDA_CALL, os.path.join(ROOT, "tests", "data", "apigw_v2_http.json"),
                        req.name], check=True, env={"PYTHONPATH": f"{ROOT}/handler:{layer}",
                                                     "MODEL_PATH": model, "PATH": "/usr/bin:/bin",
                                                     "HOME": tempfile.gettempdir()},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def closure(dist: str) -> Set[str]:
    """The installed distributions ``dist`` pulls in, itself included."""
    seen: Set[str] = set()
    todo = [dist]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for req in d.requires or []:
            if "extra ==" in req:
                continue
            todo.append(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0]
                        .split("=")[0].split("!")[0].split("~")[0].strip())
    return seen


def installed_mb(dists: Set[str]) -> float:
    total = 0
    for name in dists:
        for f in metadata.distribution(name).files or []:
            path = f.locate()
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total / 1e6


def main() -> None:
    sample = os.path.join(ROOT, "samples", "mnist")  # `make bench` builds it (`make sample`)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "src")], check=True)
    out = tempfile.mkdtemp(prefix="litert-bench-")
    lite = os.path.join(out, "mnist")
    t0 = time.perf_counter()
    subprocess.run([os.path.join(BIN, "tfserverless"), "convert", sample, lite], check=True,
                   stdout=subprocess.DEVNULL)
    convert_s = time.perf_counter() - t0
    models = {"tensorflow": sample, "litert": lite}
    colds: Dict[str, List[float]] = {k: [] for k in models}
    for _ in range(ROUNDS):
        for k, m in models.items():
            colds[k].append(cold_start(m))
    best: Dict[Tuple[str, int], Tuple[float, float, float]] = {}
    rss: Dict[str, float] = {}
    servers = {k: serve(m) for k, m in models.items()}
    try:
        for k, (proc, port) in servers.items():
            wait_ok(port, "/", body(1))
            rss[k] = group_rss_mb(proc.pid)  # type: ignore[attr-defined]
        for _ in range(3):
            for batch, clients in LOADS:
                for k, (_, port) in servers.items():
                    rps, lat = load(port, "/", body(batch), concurrency=clients, seconds=SECONDS)
                    if rps > best.get((k, batch), (0.0, 0.0, 0.0))[0]:
                        best[(k, batch)] = (rps, percentile(lat, 0.5), percentile(lat, 0.99))
    finally:
        for proc, _ in servers.values():
            stop(proc)  # type: ignore[arg-type]
    layer_dir = os.path.join(out, "layers")
    subprocess.run([sys.executable, os.path.join(ROOT, "layers", "build"), "--platform", "aws",
                    "--runtime", "litert", "--out", layer_dir], check=True, capture_output=True)
    zpath = os.path.join(layer_dir, "tfserverless-aws-litert-py3.11.zip")
    with zipfile.ZipFile(zpath) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
        zf.extractall(os.path.join(layer_dir, "opt"))
    lambdas = sorted(lambda_cold_start(os.path.join(layer_dir, "opt", "python"), lite)
                     for _ in range(ROUNDS))
    sizes = {"tensorflow": installed_mb(closure("tensorflow-cpu") or closure("tensorflow")),
             "litert": installed_mb(closure("ai-edge-litert"))}
    med = {k: statistics.median(v) for k, v in colds.items()}
    lines = [f"# litert_cpu vs the TensorFlow processor, sample MNIST (one run, {ROUNDS} cold "
             "starts each, interleaved; load: 3 rounds, best)", "",
             f"convert (CLI, verification included): {convert_s:.1f} s", "",
             "| runtime | cold start median s (all) | RSS loaded MB | installed MB |",
             "|---|---|---|---|"]
    for k in models:
        lines.append(f"| {k} | {med[k]:.3f} ({', '.join(f'{c:.2f}' for c in colds[k])}) | "
                     f"{rss[k]:.0f} | {sizes[k]:.0f} |")
    lines += ["", "| runtime | batch | clients | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for batch, clients in LOADS:
        for k in models:
            rps, p50, p99 = best[(k, batch)]
            lines.append(f"| {k} | {batch} | {clients} | {rps:,.0f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} |")
    lines += ["", f"Lambda zip layer (engine + numpy + LiteRT, bytecode included): "
              f"{os.path.getsize(zpath) / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped of "
              f"Lambda's {LAMBDA_LIMIT / 1e6:.0f} MB; its cold start (fresh Python 3.11, import main "
              f"to the first API Gateway reply): median {statistics.median(lambdas):.3f} s "
              f"({', '.join(f'{c:.2f}' for c in lambdas)})", "",
              f"RATIO cold start TensorFlow / LiteRT: {med['tensorflow'] / med['litert']:.1f}x "
              "(target >= 10x)"]
    for batch, _ in LOADS:
        r = best[("litert", batch)][0] / best[("tensorflow", batch)][0]
        target = " (target >= 1x)" if batch == 1 else " (reported)"
        lines.append(f"RATIO throughput LiteRT / TensorFlow, batch {batch}: {r:.2f}x{target}")
    lines.append(f"RATIO installed size TensorFlow / LiteRT: {sizes['tensorflow'] / sizes['litert']:.1f}x")
    write_result("litert.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
