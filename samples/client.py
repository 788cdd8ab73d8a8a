#!/usr/bin/env python
"""Call the function with the official PAI-EAS SDK, exactly as you would call EAS.

    pip install eas-prediction 'protobuf<=3.20.3'
    python samples/client.py http://127.0.0.1:8080 mnist [TOKEN]

The SDK posts to {endpoint}/api/predict/{service}; with a token it signs the request.
"""

import sys

from eas_prediction import PredictClient, TFRequest


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    service = sys.argv[2] if len(sys.argv) > 2 else "mnist"
    client = PredictClient(endpoint, service)
    if len(sys.argv) > 3:
        client.set_token(sys.argv[3])
    client.init()
    req = TFRequest("predict_images")
    req.add_feed("images", [1, 784], TFRequest.DT_FLOAT, [1] * 784)
    resp = client.predict(req)
    print("shape:", resp.get_tensor_shape("scores"))
    print("scores:", [round(v, 4) for v in resp.get_values("scores")])


if __name__ == "__main__":
    main()
