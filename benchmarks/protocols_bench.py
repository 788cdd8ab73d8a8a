"""The other client ecosystems, under load, in one run on the sample MNIST:

* ours over TF Serving's REST API (JSON ``instances``) against KServe's Python ModelServer
  with the same body on its V1 endpoint (``kserve_model.py``, .venv-kserve): target >= 3x at
  batch 1 and batch 64;
* ours over the Open Inference Protocol with binary tensors (as ``tritonclient`` sends them)
  against ours over EAS protobuf: target within 1.2x.

One worker each, batching off; then ours over REST with its default workers (one per core),
and the server's ceiling: ``bare_asgi.py``, an app on the same gunicorn + uvicorn worker that
only reads the body (what the batch-64 target asks of ours is said against it).
Batch 1 at 16 keep-alive clients, batch 64 at 4.  Rounds are
interleaved and the best of each kept.  Appends to ``benchmarks/results/protocols.md``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Tuple

import numpy as np
from _common import ROOT, free_port, spawn, stop, wait_ok, write_result
from _load import load, percentile
from serve_bench import KSERVE_PY

from tfserverless import protocol
from tfserverless.config import default_workers
from tfserverless.server import worker_class

SECONDS = float(os.environ.get("BENCH_SECONDS", "2.5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BIN = os.path.dirname(sys.executable)
LOADS = ((1, 16), (64, 4))  # (batch, concurrency)
WAYS = ("ours tfserving-json", "kserve v1-json", "ours v2-binary", "ours eas-protobuf")
DEFAULT = "ours tfserving-json, default workers"
CEILING = "ceiling: bare ASGI app, reads the body"
FREE = "what-if: ours tfserving-json, parsing free"


def start(server: str, model: str, workers: int = 1) -> Any:
    port = free_port()
    if server == "bare":
        argv = [os.path.join(BIN, "gunicorn"), "-w", "1", "-k", str(worker_class()), "-b",
                f"127.0.0.1:{port}", "--chdir", os.path.join(ROOT, "benchmarks"), "bare_asgi:app"]
        return spawn(argv, {}, port)
    if server == "kserve":
        argv = [KSERVE_PY, os.path.join(ROOT, "benchmarks", "kserve_model.py"), "--model_dir",
                model, "--signature", "predict_images", "--input", "images", "--output", "scores",
                "--model_name", "m", "--http_port", str(port), "--workers", "1"]
        return spawn(argv, {}, port)
    argv = [os.path.join(BIN, "tfserverless"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if server == "free":
        argv = [sys.executable, os.path.join(ROOT, "benchmarks", "free_json_serve.py"),
                "127.0.0.1", str(port)]
    return spawn(argv, {"MODEL_PATH": model, "WORKERS": str(workers), "RPC_BATCHING": "false"}, port)


def request(way: str, batch: int) -> Tuple[str, bytes, Dict[str, str]]:
    x = np.random.RandomState(batch).rand(batch, 784).astype(np.float32)
    if way == "kserve v1-json":
        return ("/v1/models/m:predict", json.dumps({"instances": x.tolist()}).encode(),
                {"Content-Type": "application/json"})
    if way.startswith("ours tfserving-json") or way in (CEILING, FREE):
        return ("/v1/models/m:predict", json.dumps({"signature_name": "predict_images",
                                                    "instances": x.tolist()}).encode(),
                {"Content-Type": "application/json"})
    if way == "ours v2-binary":
        head = json.dumps({"inputs": [{"name": "images", "shape": [batch, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        return ("/v2/models/m/infer", head + x.tobytes(),
                {"Inference-Header-Content-Length": str(len(head)),
                 "Content-Type": "application/octet-stream"})
    return "/", protocol.encode_request({"images": x}, signature_name="predict_images"), {}


def main() -> None:
    model = os.path.join(ROOT, "samples", "mnist")  # `make bench` builds it (`make sample`)
    procs = {"ours": start("ours", model), "kserve": start("kserve", model)}
    server_of = {w: ("kserve" if w.startswith("kserve") else "ours") for w in WAYS}
    best: Dict[Tuple[str, int], Tuple[float, float, float]] = {}
    # and ours as it comes: one worker per core (KServe's ModelServer comes with one)
    procs["ours/default"] = start("ours", model, default_workers())
    server_of[DEFAULT] = "ours/default"
    procs["bare"] = start("bare", model)
    server_of[CEILING] = "bare"
    procs["free"] = start("free", model)
    server_of[FREE] = "free"
    every = (*WAYS, DEFAULT, CEILING, FREE)
    try:
        for w in every:
            wait_ok(procs[server_of[w]].port, *request(w, 1))
        for _ in range(ROUNDS):
            for batch, conc in LOADS:
                for w in every:
                    path, body, headers = request(w, batch)
                    rps, lat = load(procs[server_of[w]].port, path, body, concurrency=conc,
                                    seconds=SECONDS, headers=headers)
                    if rps > best.get((w, batch), (0.0, 0.0, 0.0))[0]:
                        best[(w, batch)] = (rps, percentile(lat, 0.5), percentile(lat, 0.99))
    finally:
        for p in procs.values():
            stop(p)
    lines = [f"# Protocols on the sample MNIST ({ROUNDS} interleaved rounds of {SECONDS:g}s, "
             "best of each; one worker each)", "",
             "| way | batch | clients | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for batch, conc in LOADS:
        for w in every:
            rps, p50, p99 = best[(w, batch)]
            lines.append(f"| {w} | {batch} | {conc} | {rps:,.0f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} |")
    lines.append("")
    for batch, _ in LOADS:
        r = best[("ours tfserving-json", batch)][0] / best[("kserve v1-json", batch)][0]
        lines.append(f"RATIO ours TF Serving REST / KServe V1 JSON, batch {batch}: {r:.2f}x "
                     "(target >= 3x)")
    for batch, _ in LOADS:
        r = best[(DEFAULT, batch)][0] / best[("kserve v1-json", batch)][0]
        lines.append(f"RATIO as each comes (ours {default_workers()} workers, KServe 1), TF Serving "
                     f"REST / KServe V1 JSON, batch {batch}: {r:.2f}x")
    for batch, _ in LOADS:
        r = best[("ours eas-protobuf", batch)][0] / best[("ours v2-binary", batch)][0]
        lines.append(f"RATIO ours EAS protobuf / V2 binary, batch {batch}: {r:.2f}x "
                     "(target <= 1.2x)")
    for batch, _ in LOADS:
        ceiling, kserve = best[(CEILING, batch)][0], best[("kserve v1-json", batch)][0]
        lines.append(f"RATIO ceiling (an app on our server that only reads the body) / KServe V1 "
                     f"JSON, batch {batch}: {ceiling / kserve:.2f}x; 3x KServe is "
                     f"{3 * kserve / ceiling:.0%} of the ceiling")
    for batch, _ in LOADS:
        r = best[(FREE, batch)][0] / best[("kserve v1-json", batch)][0]
        lines.append(f"RATIO what-if: ours TF Serving REST with JSON parsing free / KServe V1 JSON, "
                     f"batch {batch}: {r:.2f}x (no parser can do better than free)")
    write_result("protocols.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
