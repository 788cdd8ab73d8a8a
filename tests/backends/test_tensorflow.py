"""Device configuration and loading, with the real TensorFlow on this (GPU-less) machine."""

from __future__ import annotations

import subprocess
from typing import Any, Dict

from ..conftest import PYTHON

CHECK = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
import tensorflow as tf
from tfserverless.backends.tensorflow import configure_devices
v1 = tf.compat.v1 if hasattr(tf, "compat") else tf
cfg = v1.ConfigProto()
devices = configure_devices(tf, cfg, processor=sys.argv[1], cuda_visible_devices=sys.argv[2] or None)
print("allow_growth", cfg.gpu_options.allow_growth)
print("devices", devices)
"""


def run(processor: str, cuda: str = "") -> str:
    proc = subprocess.run([PYTHON, "-c", CHECK, processor, cuda], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_gpu_processor_without_gpu_serves_on_cpu_and_says_so() -> None:
    out = run("tensorflow_gpu_2.7", "0")
    assert "allow_growth True" in out
    assert "CPU" in out.split("devices", 1)[1]
    lines = [x for x in out.splitlines() if "found no GPU" in x]
    assert lines == ["processor tensorflow_gpu_2.7 found no GPU (CUDA_VISIBLE_DEVICES='0'); "
                     "serving on CPU"]


def test_cpu_processor_is_quiet_about_gpus() -> None:
    out = run("tensorflow_cpu_2.7")
    assert "found no GPU" not in out and "allow_growth True" in out


def test_gpu_processor_env_reaches_the_model(start_server: Any, models: Dict[str, str]) -> None:
    s = start_server({"MODEL_PATH": models["tf1_mnist"],
                      "TFSERVERLESS_PROCESSOR": "tensorflow_gpu_2.7", "CUDA_VISIBLE_DEVICES": ""})
    assert "processor tensorflow_gpu_2.7 found no GPU (CUDA_VISIBLE_DEVICES='')" in s.log()
