"""A SavedModel of a chosen size: four dense ``w x w`` float32 layers (``x: [None, w]``),
``w`` picked so the variables come to about ``size`` bytes (1 GiB: w = 8192), as an
embedding table or a BERT-class encoder weighs.  Random weights (incompressible, as trained
weights nearly are).

    python benchmarks/big_model.py SIZE_MB OUT_DIR

or ``build(out_dir, size_bytes) -> w`` (imports TensorFlow).
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
MODELS = os.path.join(ROOT, "build", "bench-models")

LAYERS = 4


def width(size_bytes: int) -> int:
    return max(8, int(math.sqrt(size_bytes / (LAYERS * 4))))


def build(out_dir: str, size_bytes: int) -> int:
    import numpy as np
    import tensorflow as tf

    w = width(size_bytes)
    rng = np.random.default_rng(0)

    class Big(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [tf.Variable(rng.standard_normal((w, w), np.float32) / np.float32(np.sqrt(w)))
                           for _ in range(LAYERS)]

        @tf.function(input_signature=[tf.TensorSpec([None, w], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict:
            for layer in self.layers:
                x = tf.nn.relu(tf.matmul(x, layer))
            return {"y": tf.reduce_sum(x, axis=1)}

    model = Big()
    tf.saved_model.save(model, out_dir, signatures={"serving_default": model.serve})
    return w


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
    print(build(sys.argv[2], int(float(sys.argv[1]) * (1 << 20))))
