"""Build a large compute-bound SavedModel of about ``SIZE_MB`` megabytes (MiB) of weights.

Four ``tf.Variable`` layers of ``width x width`` float32 in a ``tf.Module``, ``width`` derived
from the size (4 layers x width^2 x 4 bytes: 1024 MB -> 8192, 512 -> 5792, 128 -> 2896).
Signature ``serving_default``: input ``x`` [None, width] float32 -> output ``y`` [None,
width], a chain of four matmuls (each followed by a ReLU; weights scaled by 1/sqrt(width) so
activations stay finite).  What the workers and cold-start benchmarks serve.

    python benchmarks/big_model.py SIZE_MB OUT_DIR
    from big_model import build; width = build(out_dir, size_bytes)
    from big_model import model; root, width, forms = model(size_mb)  # cached, with archives
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from typing import Dict, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "bench-models")  # coldstart_bench's, kept between runs

LAYERS = 4


def width_for(size_bytes: int) -> int:
    """The layer width whose four float32 square layers take about ``size_bytes``."""
    return max(8, int(math.sqrt(size_bytes / (LAYERS * 4))))


def build(out_dir: str, size_bytes: int, *, seed: int = 0) -> int:
    """Write the SavedModel to ``out_dir`` (replaced); returns the layer width."""
    import tensorflow as tf  # deferred: only building needs TensorFlow

    width = width_for(size_bytes)
    tf.random.set_seed(seed)
    scale = 1.0 / math.sqrt(width)

    class Big(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [tf.Variable(tf.random.normal([width, width], stddev=scale),
                                       name=f"w{i}") for i in range(LAYERS)]

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            h = x
            for w in self.layers:
                h = tf.nn.relu(tf.matmul(h, w))
            return {"y": h}

    m = Big()
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(m, tmp, signatures={"serving_default": m.serve})
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return width


def model(size_mb: int) -> Tuple[str, int, Dict[str, str]]:
    """The SavedModel of ``size_mb`` (built once, kept under build/), its width, its archives."""
    out = os.path.join(MODELS, str(size_mb))
    meta = os.path.join(out, "meta.json")
    if not os.path.exists(meta):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        w = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "big_model.py"),
                            str(size_mb), os.path.join(out, "model")], check=True,
                           capture_output=True, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.split()[-1]
        for name, mode in (("model.tar.gz", "w:gz"), ("model.tar", "w")):
            kw = {"compresslevel": 1} if mode == "w:gz" else {}
            with tarfile.open(os.path.join(out, name), mode, **kw) as tar:  # type: ignore
                tar.add(os.path.join(out, "model"), arcname="model")
        with open(meta, "w") as f:
            json.dump({"width": int(w)}, f)
    with open(meta) as f:
        w = json.load(f)["width"]
    return os.path.join(out, "model"), w, {
        "prefix": os.path.join(out, "model"), ".tar.gz": os.path.join(out, "model.tar.gz"),
        ".tar": os.path.join(out, "model.tar")}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: big_model.py SIZE_MB OUT_DIR")
    print(build(sys.argv[2], int(float(sys.argv[1]) * (1 << 20))))
