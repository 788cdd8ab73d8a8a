"""The URL layouts of TF Serving's REST API (``/v1/models/...``) and the Open Inference
Protocol (``/v2/...``): each path parsed once by a pattern into what it asks for, then a
table from (what, method) to its endpoint.  Predictions become a ``Job`` that runs the
protocol's codec through the same admission, batching and model as EAS requests; status,
metadata and health are answered here, in each protocol's own JSON.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

from .. import __version__
from ..backends.holder import Servable
from ..errors import MethodNotAllowed, NotFound, PayloadTooLarge
from ..messages import (
    Request,
    Response,
    check_coding,
    check_size,
    decoded_body,
    is_encoded,
    json_response,
)
from ..protocol.base import Call, Codec
from ..protocol.dtypes import DTYPES, dtype_name
from ..protocol.signature import TensorSpec
from ..protocol.tfserving import TFServing
from ..protocol.v2 import HEADER, V2, header_length
from .auth import check_auth

if TYPE_CHECKING:
    from .predictor import Context
    from .service import Service

NO_CALL = Call()
_V1 = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                 r"(?::(?P<verb>predict|classify|regress)|(?P<meta>/metadata))?")
_V2 = re.compile(r"/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
                 r"(?P<what>/ready|/infer)?")


#: what a JSON body takes in memory per byte while parsed and run, for numbers (measured: ~7.5x
#: peak RSS for a 3.4 MB batch, model run included): JSON bodies count this much against
#: ``MAX_INFLIGHT_BYTES``, so a burst of large ones is shed (450) before it is parsed.  Strings
#: take up to ~30x; what bounds them is ``MAX_JSON_BYTES`` x the admitted slots.
JSON_WEIGHT = 8


class Job:
    """Work that needs the model: a prediction (``admitted``: it goes through the admission
    queue) or a read (answered as soon as the model is there).  ``check`` runs first, with
    the model (a version the URL named must be the one loaded); ``prepare`` once the request
    holds its admitted slot: it undoes the body's Content-Encoding within the route's limits
    and says how many of its bytes are JSON."""

    __slots__ = ("admitted", "call", "check", "codec", "prepare", "run")

    def __init__(self, run: Callable[[Servable, Context], Response], *, admitted: bool,
                 codec: Optional[Codec] = None, call: Call = NO_CALL,
                 check: Optional[Callable[[Servable], None]] = None,
                 prepare: Optional[Callable[[Request], int]] = None) -> None:
        self.run, self.admitted, self.codec, self.call, self.check = run, admitted, codec, call, check
        self.prepare = prepare


#: what routing decides from a request's headers: a reply, a job, or (EAS's gateway, where an
#: empty body asks for the schema) the job to make once the body is read
Routed = Union[Response, Job, Callable[[Request], Job]]


def model_version(model: Servable) -> str:
    """The version TF Serving would report: the ``<name>/<version>/`` directory, else 1."""
    base = os.path.basename(os.path.normpath(model.path))
    return base if base.isdigit() else "1"


class ProtocolRoutes:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.tfserving, self.v2 = TFServing(), V2()

    # shared ----------------------------------------------------------------------------------

    def _model_name(self, req: Request, name: str) -> str:
        """Auth first, then the name: only a caller with the token learns the real one."""
        cfg = self.service.config
        check_auth(cfg.service_token, req, req.path, max_skew=cfg.signature_max_skew, body=False)
        if cfg.service_name and name != cfg.service_name:
            raise NotFound(f"model '{name}' not found; this function serves '{cfg.service_name}'")
        return name

    def _version_check(self, name: str, version: Optional[str]) -> Optional[Callable[[Servable], None]]:
        if not version:
            return None

        def check(model: Servable) -> None:
            if version != model_version(model):
                raise NotFound(f"model '{name}' version {version} not found; serving version "
                               f"{model_version(model)}")
        return check

    def _predict(self, req: Request, codec: Codec, call: Call, version: Optional[str]) -> Job:
        cfg = self.service.config
        # V2 binary: only the part before Inference-Header-Content-Length is JSON; everything
        # else is all JSON, and no more than MAX_JSON_BYTES of it is read or inflated
        binary = codec is self.v2 and HEADER in req.headers
        check_coding(req)
        if binary or is_encoded(req):
            check_size(req, cfg.max_body_bytes, "MAX_BODY_BYTES")
        else:
            check_size(req, cfg.max_json_bytes, "MAX_JSON_BYTES")

        def prepare(req: Request) -> int:
            if binary:
                req.body = decoded_body(req, cfg.max_body_bytes, "MAX_BODY_BYTES")
                n = header_length(req.headers[HEADER], len(req.body))
            else:
                req.body = decoded_body(req, cfg.max_json_bytes, "MAX_JSON_BYTES")
                n = len(req.body)
            if n > cfg.max_json_bytes:
                raise PayloadTooLarge(f"JSON of {n} bytes is over the limit of "
                                      f"{cfg.max_json_bytes} bytes (MAX_JSON_BYTES; parsed JSON "
                                      "takes up to ~30x its size in memory); send "
                                      "binary tensors (V2) or smaller batches")
            return n

        pred = self.service.predictor
        return Job(lambda model, ctx: pred.predict(req, model, ctx, codec, call), admitted=True,
                   codec=codec, call=call, check=self._version_check(call.model, version),
                   prepare=prepare)

    def _read(self, respond: Callable[[Servable], Response], name: str,
              version: Optional[str]) -> Job:
        check = self._version_check(name, version)

        def run(model: Servable, ctx: Context) -> Response:
            if check is not None:
                check(model)
            return respond(model)
        return Job(run, admitted=False)

    # TF Serving REST -------------------------------------------------------------------------

    def tfserving_route(self, req: Request, path: str) -> Routed:
        req.protocol = self.tfserving.name
        m = _V1.fullmatch(path[len("/v1/models/"):])
        if m is None:
            raise NotFound(f"no route {req.path}; expected /v1/models/<name>[/versions/<n>]"
                           "[:predict|:classify|:regress|/metadata]")
        name = self._model_name(req, m["name"])
        if m["label"]:
            raise NotFound(f"version label '{m['label']}' not found; this function serves one "
                           f"version of '{name}' (use /v1/models/{name} or /versions/<n>)")
        version = m["version"]
        if m["verb"]:
            _method(req, "POST")
            return self._predict(req, self.tfserving, Call(name, version or "", m["verb"]), version)
        _method(req, "GET", "HEAD")
        if m["meta"]:
            return self._read(lambda model: json_response(200, _tfs_metadata(name, model)),
                              name, version)
        return self._tfs_status(name, version)

    def _tfs_status(self, name: str, version: Optional[str]) -> Response:
        holder = self.service.holder
        holder.start()
        model = holder.model
        if model is not None:
            if version and version != model_version(model):
                raise NotFound(f"model '{name}' version {version} not found")
            state, code, message = "AVAILABLE", "OK", ""
        elif holder.state == "failed":
            state, code, message = "END", "UNKNOWN", holder.error or ""
        else:
            state, code, message = "LOADING", "OK", ""
        found = model_version(model) if model is not None else (version or "0")
        return json_response(200, {"model_version_status": [{
            "version": found, "state": state,
            "status": {"error_code": code, "error_message": message}}]})

    # Open Inference Protocol (V2) ------------------------------------------------------------

    def v2_route(self, req: Request, path: str) -> Routed:
        req.protocol = self.v2.name
        rest = path[len("/v2"):]
        simple = _V2_SIMPLE.get(rest)
        if simple is not None:
            _method(req, "GET", "HEAD")
            return simple(self)
        m = _V2.fullmatch(rest)
        if m is None:
            raise NotFound(f"no route {req.path}; expected /v2, /v2/health/live|ready or "
                           "/v2/models/<name>[/versions/<v>][/ready|/infer]")
        name = self._model_name(req, m["name"])
        version = m["version"]
        if m["what"] == "/infer":
            _method(req, "POST")
            return self._predict(req, self.v2, Call(name, version or ""), version)
        _method(req, "GET", "HEAD")
        if m["what"] == "/ready":
            return self._v2_model_ready(name, version)
        return self._read(lambda model: json_response(200, _v2_metadata(name, model)),
                          name, version)

    def _v2_live(self) -> Response:
        return json_response(200, {"live": True})

    def _v2_ready(self) -> Response:
        holder = self.service.holder
        holder.start()
        ready = holder.model is not None
        return json_response(200 if ready else 503, {"ready": ready},
                             None if ready else {"Retry-After": "1"})

    def _v2_server(self) -> Response:
        return json_response(200, {"name": "tfserverless", "version": __version__,
                                   "extensions": ["binary_tensor_data"]})

    def _v2_model_ready(self, name: str, version: Optional[str]) -> Response:
        holder = self.service.holder
        holder.start()
        model = holder.model
        if model is not None and version and version != model_version(model):
            raise NotFound(f"model '{name}' version {version} not found")
        ready = model is not None
        return json_response(200 if ready else 503, {"name": name, "ready": ready},
                             None if ready else {"Retry-After": "1"})


_V2_SIMPLE: Dict[str, Callable[[ProtocolRoutes], Response]] = {
    "": ProtocolRoutes._v2_server,
    "/": ProtocolRoutes._v2_server,
    "/health/live": ProtocolRoutes._v2_live,
    "/health/ready": ProtocolRoutes._v2_ready,
}


def _method(req: Request, *allowed: str) -> None:
    if req.method not in allowed:
        raise MethodNotAllowed(f"{req.method} {req.path}; expected {' or '.join(allowed)}",
                               headers={"Allow": ", ".join(allowed)})


def _tfs_tensor(spec: TensorSpec) -> Dict[str, Any]:
    shape: Dict[str, Any] = {"dim": [], "unknown_rank": spec.shape is None}
    if spec.shape is not None:
        shape["dim"] = [{"size": str(d), "name": ""} for d in spec.shape]
    return {"dtype": dtype_name(spec.dtype), "tensor_shape": shape, "name": spec.tensor}


def _tfs_metadata(name: str, model: Servable) -> Dict[str, Any]:
    """``GetModelMetadata`` as TF Serving's REST API writes it."""
    defs = {k: {"inputs": {a: _tfs_tensor(s) for a, s in sorted(sig.inputs.items())},
                "outputs": {a: _tfs_tensor(s) for a, s in sorted(sig.outputs.items())},
                "method_name": sig.method}
            for k, sig in sorted(model.signatures.items())}
    return {"model_spec": {"name": name, "signature_name": "", "version": model_version(model)},
            "metadata": {"signature_def": {"signature_def": defs}}}


def _v2_tensor(spec: TensorSpec) -> Dict[str, Any]:
    dt = DTYPES.get(spec.dtype)
    return {"name": spec.name, "datatype": dt.v2 if dt else dtype_name(spec.dtype),
            "shape": list(spec.shape) if spec.shape is not None else [-1]}


def _v2_metadata(name: str, model: Servable) -> Dict[str, Any]:
    sig = model.signature("")
    return {"name": name, "versions": [model_version(model)], "platform": "tensorflow_savedmodel",
            "inputs": [_v2_tensor(s) for _, s in sorted(sig.inputs.items())],
            "outputs": [_v2_tensor(s) for _, s in sorted(sig.outputs.items())]}


def split_prefix(path: str, prefixes: Tuple[Tuple[str, Any], ...]) -> Optional[Any]:
    """The route of the first prefix ``path`` starts with (a small table, in order)."""
    for prefix, route in prefixes:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return route
    return None


__all__ = ["JSON_WEIGHT", "Job", "ProtocolRoutes", "Routed", "model_version", "split_prefix"]
