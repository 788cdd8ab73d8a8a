#!/usr/bin/env python
"""Write a serialized EAS ``PredictRequest`` for the sample MNIST model (what
``TFRequest.to_string()`` gives), e.g. for ``curl --data-binary @request.bin``:

    .venv/bin/python samples/make_request.py request.bin
"""

import sys

import numpy as np

from tfserverless.protocol import encode_request


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "request.bin"
    images = np.random.RandomState(0).rand(1, 784).astype(np.float32)
    with open(out, "wb") as f:
        f.write(encode_request({"images": images}, signature_name="predict_images"))
    print(f"wrote {out}: one 1x784 float image for signature predict_images")


if __name__ == "__main__":
    main()
