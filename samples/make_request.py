#!/usr/bin/env python
"""Write a serialized EAS ``PredictRequest`` for the sample MNIST model (what
``TFRequest.to_string()`` gives), e.g. for ``curl --data-binary @out/request.bin``:

    .venv-serve/bin/python samples/make_request.py out/request.bin

(``out/``, the default's folder, is gitignored; it is made when missing.)
"""

import os
import sys

import numpy as np

from tfserverless.protocol import encode_request


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("out", "request.bin")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    images = np.random.RandomState(0).rand(1, 784).astype(np.float32)
    with open(out, "wb") as f:
        f.write(encode_request({"images": images}, signature_name="predict_images"))
    print(f"wrote {out}: one 1x784 float image for signature predict_images")


if __name__ == "__main__":
    main()
