#!/usr/bin/env python
"""Call the function with the official PAI-EAS SDK, exactly as you would call EAS.

    pip install eas-prediction 'protobuf<=3.20.3'
    python samples/client.py http://127.0.0.1:8080 mnist [TOKEN]

The SDK posts to {endpoint}/api/predict/{service}; with a token it signs the request.  When
nothing answers at the endpoint, or the call fails, it says so in one line and exits 1.
"""

import socket
import sys
from urllib.parse import urlsplit

from eas_prediction import PredictClient, TFRequest
from eas_prediction.exception import PredictException


def unreachable(endpoint: str) -> str:
    """Why nothing answers at ``endpoint`` ('' when something accepts a connection there):
    the SDK would retry and end in a traceback saying 'Code: 500 ... Connection refused'."""
    url = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", port), timeout=5).close()
    except OSError as e:
        hint = " (start it with `make serve`)" if url.hostname in ("127.0.0.1", "localhost") else ""
        return f"nothing answers on {endpoint}{hint}: {e.strerror or type(e).__name__}"
    return ""


def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    service = sys.argv[2] if len(sys.argv) > 2 else "mnist"
    why = unreachable(endpoint)
    if why:
        print(f"client: {why}", file=sys.stderr)
        return 1
    client = PredictClient(endpoint, service)
    if len(sys.argv) > 3:
        client.set_token(sys.argv[3])
    client.init()
    req = TFRequest("predict_images")
    req.add_feed("images", [1, 784], TFRequest.DT_FLOAT, [1] * 784)
    try:
        resp = client.predict(req)
    except PredictException as e:  # the reply's status and body, in one line
        message = e.message.decode("utf-8", "replace") if isinstance(e.message, bytes) else str(e.message)
        print(f"client: {endpoint} answered {e.code}: {' '.join(message.split())[:300]}",
              file=sys.stderr)
        return 1
    print("shape:", resp.get_tensor_shape("scores"))
    print("scores:", [round(v, 4) for v in resp.get_values("scores")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
