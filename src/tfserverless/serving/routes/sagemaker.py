"""Amazon SageMaker's container contract: ``GET /ping`` (200 once the model is loaded and
warmed up, else 503 at once: SageMaker polls it, two seconds a try, while a model loads) and
``POST /invocations``, read by its ``Content-Type`` as SageMaker's own containers read it:

- ``application/json`` (``jsonlines``, ``jsons``) and ``text/csv``: the TF Serving container's
  rules (``protocol.sagemaker``), with ``X-Amzn-SageMaker-Custom-Attributes`` naming the model
  (``tfs-model-name``: the served one, else a 404), its version and ``tfs-method``;
  a JSON body that is a V2 request (``"inputs"`` a list of tensor objects) is read as one;
- ``application/vnd.sagemaker-triton.binary+json;json-header-size=N``: V2 with binary tensors,
  as SageMaker's Triton container takes it;
- ``application/octet-stream``, ``application/x-protobuf``: the EAS protobuf.

Every error is ``{"error": "..."}`` as that container answers (``req.protocol`` "sagemaker"),
and every request goes through the same auth, limits, admission and batching as the other
routes'."""

from __future__ import annotations

import re
from typing import Callable, Dict, Optional

from ...backends.holder import ModelHolder
from ...backends.servable import Servable
from ...config import Config
from ...errors import NotFound, UnsupportedMediaType
from ...messages import Request, Response, check_coding, check_size
from ...protocol.base import Call, Codec
from ...protocol.sagemaker import (
    ATTRIBUTES,
    CSV_CODEC,
    CSV_TYPE,
    JSON_CODEC,
    JSON_TYPES,
    Attributes,
    custom_attributes,
    media_type,
    predict_only,
)
from ...protocol.text import clip
from ...protocol.v2 import HEADER, V2
from ...versions import model_name_of
from ..predictor import Context, Predictor
from .common import Job, Routed, Routes, allow, ready_reply
from .eas import EASRoutes
from .v2 import json_part

PING, INVOCATIONS = "/ping", "/invocations"
RUNTIME_PREFIX = "/endpoints"
_RUNTIME_PATH = re.compile(RUNTIME_PREFIX + r"/(?P<name>[^/]+)" + INVOCATIONS)
PROTOCOL = "sagemaker"
TRITON_BINARY = "application/vnd.sagemaker-triton.binary+json"
PROTOBUF_TYPES = ("application/octet-stream", "application/x-protobuf", "application/protobuf")
_V2 = V2()


class SageMakerRoutes(Routes):
    def __init__(self, config: Config, holder: ModelHolder, predictor: Predictor) -> None:
        super().__init__(config, holder, predictor)
        self.eas = EASRoutes(config, holder, predictor)

    def ping(self, req: Request) -> Response:
        """Readiness, without the token (SageMaker sends none) and saying nothing else."""
        allow(req, "GET", "HEAD")
        self.holder.start()  # a probe is what first starts the load on an idle instance
        return ready_reply(self.holder.serving, {"status": self.holder.state})

    def invocations(self, req: Request) -> Routed:
        req.protocol = PROTOCOL
        allow(req, "POST")
        self.authorize(req)
        return self._invoke(req)

    def runtime(self, req: Request, path: str) -> Routed:
        """SageMaker Runtime's own path, ``POST /endpoints/<name>/invocations``: boto3's
        ``invoke_endpoint`` (``endpoint_url`` this server) reaches the model unchanged;
        ``<name>`` is the service's (``SERVICE_NAME``, any when unset)."""
        req.protocol = PROTOCOL
        m = _RUNTIME_PATH.fullmatch(path)
        if m is None:
            raise NotFound(f"no route {clip(req.path)}; expected POST {RUNTIME_PREFIX}/<name>"
                           f"{INVOCATIONS} or POST {INVOCATIONS}")
        allow(req, "POST")
        self.model_name(req, m["name"])
        return self._invoke(req)

    def _invoke(self, req: Request) -> Routed:
        attrs = custom_attributes(req.headers.get(ATTRIBUTES, ""))
        media = media_type(req.headers.get("content-type", ""))
        route = _BY_MEDIA.get(media)
        if route is None:
            raise UnsupportedMediaType(
                f"Unsupported Media Type: {media[:64] or 'Unknown'}; expected "
                f"{', '.join(sorted(_BY_MEDIA))}")
        return route(self, req, attrs)

    # by media type -----------------------------------------------------------------------------

    def _json(self, req: Request, attrs: Attributes) -> Routed:
        """TF Serving JSON, or a V2 request: the codec tells which from the body."""
        return self._job(req, attrs, JSON_CODEC, None)

    def _csv(self, req: Request, attrs: Attributes) -> Routed:
        return self._job(req, attrs, CSV_CODEC, None)

    def _triton_binary(self, req: Request, attrs: Attributes) -> Routed:
        """V2, its JSON header's length in the Content-Type (``json-header-size``) as the
        Triton container takes it; without one the body is all JSON."""
        predict_only(attrs.method, "a V2 request")
        for param in req.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "json-header-size":
                req.headers[HEADER] = value.strip()
        return self._job(req, attrs, _V2, json_part if HEADER in req.headers else None)

    def _protobuf(self, req: Request, attrs: Attributes) -> Routed:
        """The EAS protobuf (``PredictRequest``), as on ``POST /`` (an empty body: the schema)."""
        predict_only(attrs.method, "an EAS protobuf request")
        check_size(req, self.config.max_body_bytes, "MAX_BODY_BYTES")
        check_coding(req)
        return lambda req: self._checked(self.eas.job(req), attrs)

    # ---------------------------------------------------------------------------------------

    def _job(self, req: Request, attrs: Attributes, codec: Codec,
             json_part: Optional[Callable[[Request], int]]) -> Job:
        call = Call(self._named(attrs), attrs.version, attrs.method)
        return self._checked(self.predict_job(req, codec, call, attrs.version or None, json_part),
                             attrs)

    def _checked(self, job: Job, attrs: Attributes) -> Job:
        """``job``, refused with a 404 when the model it names is not the served one (or the
        version it names not the loaded one)."""
        asked = attrs.model
        versions = job.check or self.version_check(asked, attrs.version or None)

        def check(model: Servable) -> None:
            served = self.served_name(model)
            if asked and asked != served:
                raise NotFound(f"model '{asked}' (tfs-model-name) not found; this endpoint "
                               f"serves '{served}'")
            if versions is not None:
                versions(model)
        job.check = check
        if not job.admitted:  # a read (EAS's schema, an empty body): the runner checks only
            run = job.run      # predictions, so the read checks itself

            def checked(model: Servable, ctx: Context) -> Response:
                check(model)
                return run(model, ctx)
            job.run = checked
        return job

    def _named(self, attrs: Attributes) -> str:
        """The model a request names (its custom attributes), else the served one."""
        if attrs.model:
            return attrs.model
        model = self.holder.model
        return self.served_name(model) if model is not None else self.config.service_name

    def served_name(self, model: Servable) -> str:
        """``SERVICE_NAME``, else the name TF Serving gives the model's directory (SageMaker's
        TF Serving container: ``/opt/ml/model/<name>/<version>/``)."""
        return self.config.service_name or model_name_of(model.path)


_Route = Callable[[SageMakerRoutes, Request, Attributes], Routed]
_BY_MEDIA: Dict[str, _Route] = {
    **{t: SageMakerRoutes._json for t in JSON_TYPES},
    CSV_TYPE: SageMakerRoutes._csv,
    TRITON_BINARY: SageMakerRoutes._triton_binary,
    **{t: SageMakerRoutes._protobuf for t in PROTOBUF_TYPES},
}

__all__ = ["INVOCATIONS", "PING", "PROTOBUF_TYPES", "PROTOCOL", "RUNTIME_PREFIX", "SageMakerRoutes",
           "TRITON_BINARY"]
