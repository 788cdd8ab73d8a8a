"""The Open Inference Protocol (``/v2``, ``/v2/health/live|ready``,
``/v2/models/<name>[/versions/<v>][/ready|/infer]``): the path parsed once by a pattern, then
a table for the fixed paths; inference becomes a ``Job`` through the same admission, batching
and model as every protocol's (binary tensors: only the JSON header counts as JSON)."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict

from ... import __version__
from ...backends.servable import Servable
from ...errors import NotFound
from ...messages import Request, Response, json_response
from ...protocol.base import Call
from ...protocol.dtypes import DTYPES, dtype_name
from ...protocol.signature import TensorSpec
from ...protocol.text import clip
from ...protocol.v2 import HEADER, V2, header_length
from .common import Routed, Routes, allow, model_version, ready_reply

PREFIX = "/v2"
_PATH = re.compile(r"/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
                   r"(?P<what>/ready|/infer|/stats)?")


def json_part(req: Request) -> int:
    """Where the JSON part of a V2 binary-extension body ends (its ``Inference-Header-Content-
    Length``): SageMaker's Triton content type carries the same body."""
    return header_length(req.headers[HEADER], len(req.body))


class V2Routes(Routes):
    codec = V2()

    def route(self, req: Request, path: str) -> Routed:
        req.protocol = self.codec.name
        rest = path[len(PREFIX):]
        simple = _SIMPLE.get(rest)
        if simple is not None:
            allow(req, "GET", "HEAD")
            return simple(self)
        m = _PATH.fullmatch(rest)
        if m is None:
            raise NotFound(f"no route {clip(req.path)}; expected /v2, /v2/health/live|ready or "
                           "/v2/models/<name>[/versions/<v>][/ready|/infer]")
        name = self.model_name(req, m["name"])
        version = m["version"]
        if m["what"] == "/infer":
            allow(req, "POST")
            binary = json_part if HEADER in req.headers else None
            return self.predict_job(req, self.codec, Call(name, version or ""), version, binary)
        allow(req, "GET", "HEAD")
        if m["what"] == "/ready":
            ready = self.loaded_version(name, version) is not None and self.holder.serving
            return ready_reply(ready, {"name": name, "ready": ready})
        if m["what"] == "/stats":  # Triton's statistics extension
            totals = self.predictor.metrics.inference_totals
            return self.read_job(lambda model: json_response(200, stats_json(
                name, model_version(model), totals())), name, version)
        return self.read_job(lambda model: json_response(200, metadata(name, model)),
                             name, version)

    def live(self) -> Response:
        return json_response(200, {"live": True})

    def ready(self) -> Response:
        self.holder.start()
        ready = self.holder.serving
        return ready_reply(ready, {"ready": ready})

    def server(self) -> Response:
        return json_response(200, {"name": "tfserverless", "version": __version__,
                                   "extensions": list(EXTENSIONS)})


_SIMPLE: Dict[str, Callable[[V2Routes], Response]] = {
    "": V2Routes.server,
    "/": V2Routes.server,
    "/health/live": V2Routes.live,
    "/health/ready": V2Routes.ready,
}


def _tensor(spec: TensorSpec) -> Dict[str, Any]:
    dt = DTYPES.get(spec.dtype)
    return {"name": spec.name, "datatype": dt.v2 if dt else dtype_name(spec.dtype),
            "shape": list(spec.shape) if spec.shape is not None else [-1]}


#: the extensions both V2 front doors say they have (``/v2`` and gRPC's ``ServerMetadata``)
EXTENSIONS = ("binary_tensor_data", "model_configuration", "parameters", "statistics")


def stats_json(name: str, version: Any, totals: Dict[str, float]) -> Dict[str, Any]:
    """Triton's statistics extension (``GET /v2/models/<name>/stats``) from the counters
    /metrics keeps (``Metrics.inference_totals``): durations in nanoseconds."""
    def d(key: str) -> Dict[str, int]:
        return {"count": int(totals[key]), "ns": int(totals[key + "_ns"])}

    none = {"count": 0, "ns": 0}
    return {"model_stats": [{
        "name": name, "version": str(version), "last_inference": int(totals["last_inference"]),
        "inference_count": int(totals["inference_count"]),
        "execution_count": int(totals["execution_count"]),
        "inference_stats": {"success": d("success"), "fail": d("fail"), "queue": d("queue"),
                            "compute_input": none, "compute_infer": d("compute"),
                            "compute_output": none},
        "batch_stats": []}]}


def metadata(name: str, model: Servable) -> Dict[str, Any]:
    """Model metadata as the Open Inference Protocol writes it."""
    sig = model.signature("")
    return {"name": name, "versions": [str(model_version(model))], "platform": "tensorflow_savedmodel",
            "inputs": [_tensor(s) for _, s in sorted(sig.inputs.items())],
            "outputs": [_tensor(s) for _, s in sorted(sig.outputs.items())]}


__all__ = ["EXTENSIONS", "PREFIX", "V2Routes", "json_part", "metadata", "stats_json"]
