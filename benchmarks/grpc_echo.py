"""The client's ceiling: a bare ``grpc.aio`` server (the gRPC stack ``tfserverless serve``
runs in its worker) that answers V2's ``ModelInfer`` and TF Serving's ``Predict`` with a fixed
reply of the right size (a [B, 10] FP32 ``scores``, encoded once at start) and does nothing
else: not even parse the request.  What a client reaches against it is the most it can reach
against any Python gRPC server on this machine.  ``python grpc_echo.py PORT``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict

import grpc
import numpy as np

from tfserverless.protocol.tfs_grpc import encode_predict_response
from tfserverless.protocol.tfs_messages import ModelSpec
from tfserverless.protocol.v2_grpc import encode_infer_response

#: a request over this many bytes is taken for batch 64 (batch 1's is ~3 kB, 64's ~200 kB)
BIG = 50_000


def replies(method: str) -> Dict[bool, bytes]:
    out = {}
    for big, batch in ((False, 1), (True, 64)):
        scores = {"scores": np.zeros((batch, 10), np.float32)}
        if method.endswith("ModelInfer"):
            out[big] = encode_infer_response(scores, ["scores"], model="m", version="1")
        else:
            out[big] = encode_predict_response(scores, ModelSpec("m", 1, "", "predict_images"))
    return out


async def main(port: int) -> None:
    methods = ("/inference.GRPCInferenceService/ModelInfer",
               "/tensorflow.serving.PredictionService/Predict")
    handlers = {}
    for m in methods:
        fixed = replies(m)

        async def answer(body: bytes, context: Any, fixed: Dict[bool, bytes] = fixed) -> bytes:
            return fixed[len(body) > BIG]
        handlers[m] = grpc.unary_unary_rpc_method_handler(answer)

    class Handler(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            return handlers.get(details.method)

    server = grpc.aio.server(options=(("grpc.max_receive_message_length", 64 << 20),))
    server.add_generic_rpc_handlers((Handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
