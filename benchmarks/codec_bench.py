"""Codec: decode + encode a 4 MiB float32 request, ours vs the obvious protobuf-python way.

Baseline (measured in the same run): ``PredictRequest.ParseFromString``, then
``np.array(list(float_val))``; the reply built with ``float_val.extend(arr.tolist())`` and
``SerializeToString``.  Target: >= 20x faster and >= 1 GB/s.
"""

from __future__ import annotations

import numpy as np
from _common import best_of, predict_pb2

from tfserverless import protocol


def main() -> None:
    pb = predict_pb2()
    x = np.random.RandomState(0).rand(1024, 1024).astype(np.float32)  # 4 MiB
    body = protocol.encode_request({"images": x}, signature_name="predict_images")
    reply_arr = x  # echo the same size back, so encode costs as much as decode

    def ours() -> bytes:
        req = protocol.decode_request(body)
        arr = req.inputs["images"].to_numpy("images")
        return protocol.encode_response({"scores": arr if arr is not None else reply_arr})

    def obvious() -> bytes:
        req = pb.PredictRequest()
        req.ParseFromString(body)
        a = req.inputs["images"]
        arr = np.array(list(a.float_val), dtype=np.float32).reshape(list(a.array_shape.dim))
        resp = pb.PredictResponse()
        out = resp.outputs["scores"]
        out.dtype = 1
        out.array_shape.dim.extend(arr.shape)
        out.float_val.extend(arr.reshape(-1).tolist())
        return bytes(resp.SerializeToString())

    assert protocol.decode_response(ours())["scores"].tobytes() == x.tobytes()
    assert protocol.decode_response(obvious())["scores"].tobytes() == x.tobytes()
    t_ours = best_of(ours, repeat=9, number=5)
    t_obv = best_of(obvious, repeat=3, number=1)
    import google.protobuf as gp

    mb = len(body) / 1e6
    print(f"codec: body {len(body)} bytes (protobuf {gp.__version__}, "
          f"{type(pb.PredictRequest()).__module__})")
    print(f"  ours    decode+encode: {t_ours * 1e3:8.2f} ms  {2 * mb / t_ours / 1e3:6.2f} GB/s "
          f"(bytes in + out)")
    print(f"  obvious decode+encode: {t_obv * 1e3:8.2f} ms  {2 * mb / t_obv / 1e3:6.2f} GB/s")
    print(f"  RATIO codec speedup ours/obvious: {t_obv / t_ours:.1f}x (target >= 20x)")
    print(f"  RATIO codec throughput: {2 * mb / t_ours / 1e3:.2f} GB/s (target >= 1 GB/s)")


if __name__ == "__main__":
    main()
