"""Device configuration and loading, with the real TensorFlow on this (GPU-less) machine."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Dict

import pytest

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


LOAD = """
import json, logging, sys, warnings
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append("%s: %s" % (record.name, record.getMessage()))
logging.getLogger("tensorflow").addHandler(Keep())
logging.getLogger("tensorflow").setLevel(logging.DEBUG)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from tfserverless.backends.tensorflow import Model
    model = Model.load(sys.argv[1])
print(json.dumps({"records": records, "signatures": sorted(model.signatures),
                  "warnings": ["%s:%s: %s" % (w.filename, w.lineno, w.message) for w in caught]}))
"""


@pytest.mark.parametrize("name", ["tf1_mnist", "tf2_native"])
def test_loading_raises_no_deprecation_of_ours(models: Dict[str, str], name: str) -> None:
    """A fresh process each (TensorFlow says a deprecation once per process): neither a
    ``WARNING:tensorflow: ... is deprecated`` note nor a Python warning from our calls."""
    proc = subprocess.run([PYTHON, "-c", LOAD, models[name]], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["signatures"]
    assert [r for r in got["records"] if "deprecat" in r.lower()] == []
    assert [w for w in got["warnings"] if "tfserverless" in w.split(":")[0]] == []
    assert "is deprecated" not in proc.stderr
