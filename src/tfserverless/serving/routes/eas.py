"""The EAS gateway's routes: ``POST /`` and ``POST /api/predict/<service>`` (the official
SDK's two ways in) predict with the EAS protobuf; a GET, or a POST with an empty body, asks
for the signature's schema.  The token (or a signed request) is checked before the name, so
only its holder learns the real service name."""

from __future__ import annotations

from typing import Optional

from ...backends.servable import Servable
from ...errors import MethodNotAllowed, NotFound
from ...messages import (
    GATEWAY_PREFIX,
    Request,
    Response,
    check_coding,
    check_size,
    decoded_body,
    inflates_to_nothing,
)
from ...protocol.base import Call
from ...protocol.eas import EAS
from ...protocol.signature import signature_json_bytes
from ...protocol.text import clip, quote
from ..auth import check_auth
from .common import Job, Routed, Routes

EAS_CALL = Call()


class EASRoutes(Routes):
    codec = EAS()

    def prefixed(self, req: Request, path: str) -> Routed:
        """``/api/predict/<service>``."""
        if path.count("/") != 3:
            raise NotFound(f"no route {clip(req.path)}; expected {GATEWAY_PREFIX}<service>")
        return self.gateway(req, path[len(GATEWAY_PREFIX):])

    def gateway(self, req: Request, name: Optional[str] = None) -> Routed:
        """``/`` (``name`` None) or ``/api/predict/<name>``: auth, the name, the sizes; the
        job is made once the body is read (an empty one asks for the schema)."""
        req.protocol = self.codec.name
        if req.method not in ("GET", "POST", "HEAD"):
            raise MethodNotAllowed(f"{clip(req.method)} {clip(req.path)}; expected POST (or GET "
                                   "for the schema)", headers={"Allow": "GET, POST"})
        configured = self.config.service_name
        resource = GATEWAY_PREFIX + (configured if name is None else name)
        check_auth(self.config.service_token, req, resource,
                   max_skew=self.config.signature_max_skew, body=False)
        if name is not None and configured and name != configured:
            # after auth: only a caller with the token learns the real name (or the limits)
            raise NotFound(f"service {quote(name)} not found; this function serves '{configured}' at "
                           f"{GATEWAY_PREFIX}{configured}")
        check_size(req, self.config.max_body_bytes, "MAX_BODY_BYTES")
        check_coding(req)
        return self.job

    def job(self, req: Request) -> Job:
        if req.method in ("GET", "HEAD") or not req.body or inflates_to_nothing(req):
            sig_name = req.query.get("signature_name", "")
            return Job(lambda model, ctx: schema(model, sig_name), admitted=False)
        limit = self.config.max_body_bytes

        def prepare(req: Request) -> int:
            req.body = decoded_body(req, limit, "MAX_BODY_BYTES")  # as on /v1 and /v2
            return 0

        codec, pred = self.codec, self.predictor
        return Job(lambda model, ctx: pred.predict(req, model, ctx, codec, EAS_CALL),
                   admitted=True, codec=codec, prepare=prepare)


def schema(model: Servable, signature_name: str = "") -> Response:
    """A signature's inputs and outputs, as EAS's TensorFlow processor describes them."""
    sig = model.signature(signature_name)
    return Response(200, signature_json_bytes(sig), {"Content-Type": "application/json"})


__all__ = ["EASRoutes", "schema"]
