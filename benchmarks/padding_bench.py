"""Would TF Serving's ``allowed_batch_sizes`` padding help on CPU?  For every batch size n up
to 16, one model call of n rows against one of n padded to the next allowed size (powers of
two), in-process, on the sample MNIST and the weight-bound 784-2048-2048-10 model.  Padding
pays only where the padded call is quicker than the unpadded one."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

import numpy as np
from _common import ROOT, best_of

from tfserverless.backends.tensorflow import Model

ALLOWED = (1, 2, 4, 8, 16)


def main() -> None:
    wide = os.path.join(tempfile.mkdtemp(prefix="padding-"), "wide")
    subprocess.run([sys.executable, os.path.join(ROOT, "samples", "build_mnist.py"), wide,
                    "2048,2048"], check=True, capture_output=True)
    for name, path in (("mnist", os.path.join(ROOT, "samples", "mnist")),
                       ("784-2048-2048-10", wide)):
        model = Model.load(path)
        sig = model.signature("predict_images")
        xs = {n: np.random.RandomState(n).rand(n, 784).astype(np.float32) for n in range(1, 17)}
        for x in xs.values():  # first calls of each shape are slower
            for _ in range(5):
                model.run(sig, {"images": x}, ["scores"])
        wins, worst = [], 0.0
        for n in range(1, 17):
            padded = next(a for a in ALLOWED if a >= n)
            if padded == n:
                continue
            plain = best_of(functools.partial(model.run, sig, {"images": xs[n]}, ["scores"]),
                            repeat=5, number=30)
            pad = best_of(functools.partial(model.run, sig, {"images": xs[padded]}, ["scores"]),
                          repeat=5, number=30)
            worst = max(worst, pad / plain)
            if pad < plain * 0.95:
                wins.append(f"{n}->{padded} ({plain * 1e3:.2f} vs {pad * 1e3:.2f} ms)")
        print(f"padding {name}: padded calls cost up to {worst:.2f}x the unpadded ones; "
              f"padding quicker by 5% or more for: {', '.join(wins) or 'no batch size'}")


if __name__ == "__main__":
    main()
