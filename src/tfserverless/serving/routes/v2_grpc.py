"""V2's ``inference.GRPCInferenceService`` (``/inference.GRPCInferenceService/<Method>``, as
``tritonclient.grpc`` calls it): a table of methods, each answered as the HTTP V2 path answers
its counterpart: liveness, readiness and server metadata without the token (as ``/v2``,
``/v2/health/*``), everything about the model after auth then the name; ``ModelInfer`` becomes a
``Job`` through the same admission, batching and model as every protocol's."""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

from ... import __version__
from ...backends.servable import Servable
from ...messages import Request, Response
from ...protocol import v2_grpc_meta as meta
from ...protocol.base import Call
from ...protocol.v2_grpc import CONTENT_TYPE, V2Grpc, read_model
from .common import Routed, Routes, allow, model_version
from .v2 import EXTENSIONS

SERVICE = "/inference.GRPCInferenceService/"


def reply(body: bytes) -> Response:
    return Response(200, body, dict(CONTENT_TYPE))


def model_stats(name: str, version: str, totals: Dict[str, float]) -> meta.ModelStats:
    """Triton's statistics for the model, from the counters /metrics keeps (``totals``:
    ``Metrics.inference_totals``)."""
    def d(key: str) -> meta.Duration:
        return meta.Duration(int(totals[key]), int(totals[key + "_ns"]))

    return meta.ModelStats(
        name=name, version=version, last_inference=int(totals["last_inference"]),
        inference_count=int(totals["inference_count"]),
        execution_count=int(totals["execution_count"]), success=d("success"), fail=d("fail"),
        queue=d("queue"), compute_infer=d("compute"))


class V2GrpcRoutes(Routes):
    codec = V2Grpc()

    def methods(self) -> Dict[str, Callable[[Request], Routed]]:
        """Each method's full name -> its route."""
        return {SERVICE + name: self._entry(route) for name, route in _METHODS.items()}

    def _entry(self, route: Callable[[V2GrpcRoutes, Request], Routed]) -> Callable[[Request], Routed]:
        def enter(req: Request) -> Routed:
            allow(req, "POST")
            req.protocol = self.codec.name
            return route(self, req)
        return enter

    def _model(self, req: Request, message: str) -> Tuple[str, Optional[str]]:
        """Auth, then the model the message names (fields 1-2 of each model request)."""
        self.authorize(req)
        name, version = read_model(req.body, message)
        return self.known_name(name), version or None

    def live(self, req: Request) -> Response:
        return reply(meta.server_live(True))

    def ready(self, req: Request) -> Response:
        self.holder.start()  # a readiness probe is what first starts the load
        return reply(meta.server_ready(self.holder.serving))

    def server_metadata(self, req: Request) -> Response:
        return reply(meta.server_metadata("tfserverless", __version__, EXTENSIONS))

    def model_ready(self, req: Request) -> Response:
        name, version = self._model(req, "inference.ModelReadyRequest")
        ready = self.loaded_version(name, version) is not None and self.holder.serving
        return reply(meta.model_ready(ready))

    def model_metadata(self, req: Request) -> Routed:
        name, version = self._model(req, "inference.ModelMetadataRequest")
        return self.read_job(lambda m: reply(meta.model_metadata(
            name, [str(model_version(m))], m.signature(""))), name, version)

    def model_config(self, req: Request) -> Routed:
        name, version = self._model(req, "inference.ModelConfigRequest")
        cfg = self.config
        rows = cfg.rpc_max_batch_size if cfg.rpc_batching else 0
        return self.read_job(lambda m: reply(meta.model_config(name, m.signature(""), rows)),
                             name, version)

    def model_statistics(self, req: Request) -> Routed:
        """Every model's when the name is empty (there is one), else the one named."""
        self.authorize(req)
        name, version = read_model(req.body, "inference.ModelStatisticsRequest")
        name = self.known_name(name or self.config.service_name)
        totals = self.predictor.metrics.inference_totals

        def respond(m: Servable) -> Response:
            label = name or _default_name(m)
            return reply(meta.model_statistics([model_stats(label, str(model_version(m)),
                                                            totals())]))
        return self.read_job(respond, name, version or None)

    def infer(self, req: Request) -> Routed:
        name, version = self._model(req, "inference.ModelInferRequest")
        return self.message_job(req, self.codec, Call(name, version or ""), version)


def _default_name(model: Servable) -> str:
    return os.path.basename(os.path.normpath(model.path)) or "model"


_METHODS: Dict[str, Callable[[V2GrpcRoutes, Request], Routed]] = {
    "ServerLive": V2GrpcRoutes.live,
    "ServerReady": V2GrpcRoutes.ready,
    "ServerMetadata": V2GrpcRoutes.server_metadata,
    "ModelReady": V2GrpcRoutes.model_ready,
    "ModelMetadata": V2GrpcRoutes.model_metadata,
    "ModelConfig": V2GrpcRoutes.model_config,
    "ModelStatistics": V2GrpcRoutes.model_statistics,
    "ModelInfer": V2GrpcRoutes.infer,
}


__all__ = ["SERVICE", "V2GrpcRoutes", "model_stats"]
