"""The baseline adapter, written the obvious way: protobuf parse, per-element lists,
``tf.saved_model.load`` signatures.  Served by the same functions-framework stack as ours:
``BENCH_STACK=asgi`` registers it as an ``async`` function (functions-framework's ASGI
server, what our ``predict`` uses), otherwise it is a plain Flask function."""

import os
import sys

import numpy as np

sys.path.insert(0, os.environ["PB2_DIR"])
import predict_pb2

_model = None


def _signatures():  # type: ignore[no-untyped-def]
    global _model
    if _model is None:
        import tensorflow as tf

        _model = tf.saved_model.load(os.environ["MODEL_PATH"])
    return _model.signatures


def answer(data):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    req = predict_pb2.PredictRequest()
    req.ParseFromString(data)
    fn = _signatures()[req.signature_name or "serving_default"]
    feeds = {}
    for name, a in req.inputs.items():
        arr = np.array(list(a.float_val), dtype=np.float32).reshape(list(a.array_shape.dim))
        feeds[name] = tf.constant(arr)
    outputs = fn(**feeds)
    resp = predict_pb2.PredictResponse()
    for name, t in outputs.items():
        arr = t.numpy()
        o = resp.outputs[name]
        o.dtype = predict_pb2.DT_FLOAT
        o.array_shape.dim.extend(arr.shape)
        o.float_val.extend(arr.reshape(-1).tolist())
    return resp.SerializeToString()


if os.environ.get("BENCH_STACK") == "asgi":
    from functions_framework import aio
    from starlette.responses import Response

    @aio.http
    async def predict(request):  # type: ignore[no-untyped-def]
        return Response(answer(await request.body()), media_type="application/octet-stream")

else:

    def predict(request):  # type: ignore[no-untyped-def]
        return answer(request.get_data()), 200, {"Content-Type": "application/octet-stream"}
