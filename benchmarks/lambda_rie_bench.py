"""The sample MNIST's Lambda init under Lambda's real runtime: the runtime interface emulator
(``make rie``) in front of awslambdaric, as ``tests/platforms/test_lambda_rie.py`` runs it.

For the image's CMD (the SavedModel, TensorFlow) and the zip function (the LiteRT layer from
``layers/build --platform aws --runtime litert``, the model from ``tfserverless convert``),
``BENCH_ROUNDS`` fresh instances each: the emulator's start to the first invoke's reply (an
EAS protobuf predict in an HTTP API event; the runtime starts on that invoke, so this is
Lambda's init phase and the first request together), our init hook's share (``Lambda init:
model ready in``: load and warm-up) and a warm invoke.  Lambda's init phase is capped at 10 s.

Writes ``benchmarks/results/lambda_rie.md``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
from _common import ROOT, write_result

sys.path.insert(0, ROOT)  # the test suite's emulator harness, run as it is in the tests
from tests.platforms.conftest import fixture, lambda_event
from tests.platforms.rie import (
    Function,
    base_env,
    image_function,
    zip_function,
    zip_layout,
)
from tfserverless import protocol

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
X = np.random.RandomState(5).rand(1, 784).astype(np.float32)
EVENT = lambda_event(fixture("apigw_v2_http.json"), "POST", "/api/predict/mnist",
                     {"Content-Type": "application/octet-stream"},
                     protocol.encode_request({"images": X}, signature_name="predict_images"))
READY = re.compile(r"Lambda init: model ready in ([0-9.]+)s")


def rounds(start: Callable[[str], Function], out: str) -> List[Tuple[float, float, float]]:
    """(start to first reply, the init hook's seconds, a warm invoke's seconds) per instance."""
    got = []
    for i in range(ROUNDS):
        fn = start(os.path.join(out, f"round{i}.log"))
        try:
            assert fn.invoke(EVENT)["statusCode"] == 200, fn.log()[-2000:]
            t0 = time.perf_counter()
            fn.invoke(EVENT)
            warm = time.perf_counter() - t0
            hook = READY.findall(fn.log())
            assert fn.first_reply is not None and len(hook) == 1, fn.log()[-2000:]
            got.append((fn.first_reply, float(hook[0]), warm))
        finally:
            fn.stop()
    return got


def main() -> None:
    out = tempfile.mkdtemp(prefix="lambda-rie-bench-")
    sample = os.path.join(out, "mnist")
    subprocess.run([sys.executable, os.path.join(ROOT, "samples", "build_mnist.py"), sample],
                   check=True, capture_output=True)
    lite = os.path.join(out, "mnist-litert")
    subprocess.run([sys.executable, "-m", "tfserverless", "convert", sample, lite], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "layers", "build"), "--platform", "aws",
                    "--runtime", "litert", "--python", "3.11", "--out", out], check=True,
                   capture_output=True)
    paths = zip_layout(os.path.join(out, "zip"), os.path.join(out, "tfserverless-aws-litert-py3.11.zip"))
    env: Dict[str, Dict[str, str]] = {
        "image": base_env(out, MODEL_PATH=sample, SERVICE_NAME="mnist"),
        "zip": base_env(out, MODEL_PATH=lite, SERVICE_NAME="mnist")}
    kinds: Dict[str, Callable[[str], Function]] = {
        "image (TensorFlow, SavedModel)": lambda log: image_function(env["image"], log),
        "zip (LiteRT layer, converted)": lambda log: zip_function(paths, env["zip"], log)}
    lines = ["# The sample MNIST under Lambda's runtime interface emulator", "",
             f"Median (min-max) of {ROUNDS} fresh instances each; Lambda's init phase is "
             "capped at 10 s.", "",
             "| function | emulator start to first reply | init hook (load + warm-up) | warm invoke |",
             "| --- | --- | --- | --- |"]
    for name, start in kinds.items():
        got = rounds(start, out)
        cols = []
        for k, unit in ((0, "s"), (1, "s"), (2, "ms")):
            xs = [g[k] * (1e3 if unit == "ms" else 1) for g in got]
            cols.append(f"{statistics.median(xs):.2f} {unit} ({min(xs):.2f}-{max(xs):.2f})")
        lines.append(f"| {name} | " + " | ".join(cols) + " |")
    write_result("lambda_rie.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
