"""TF Serving's REST API (``/v1/models/<name>[/versions/<n>][:predict|:classify|:regress]``,
``/metadata``, model status): the path parsed once by a pattern; predictions become a ``Job``
through the same admission, batching and model as every protocol's; status and metadata in
TF Serving's own JSON."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

from ...backends.servable import Servable
from ...errors import BadRequest, NotFound
from ...messages import Request, Response, json_response
from ...protocol.base import Call
from ...protocol.dtypes import dtype_name
from ...protocol.signature import TensorSpec
from ...protocol.text import clip, quote
from ...protocol.tfserving import TFServing
from ...versions import MAX_VERSION, version_number
from .common import Routed, Routes, allow, model_version

PREFIX = "/v1/models/"
_PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?::(?P<verb>predict|classify|regress)|(?P<meta>/metadata))?")


class TFServingRoutes(Routes):
    codec = TFServing()

    def route(self, req: Request, path: str) -> Routed:
        req.protocol = self.codec.name
        m = _PATH.fullmatch(path[len(PREFIX):])
        if m is None:
            raise NotFound(f"no route {clip(req.path)}; expected {PREFIX}<name>[/versions/<n>]"
                           "[:predict|:classify|:regress|/metadata]")
        name = self.model_name(req, m["name"])
        if m["label"]:
            raise NotFound(f"version label {quote(m['label'])} not found; this function serves one "
                           f"version of '{name}' (use {PREFIX}{name} or /versions/<n>)")
        version = m["version"]
        if version and version_number(version) is None:  # TF Serving: "Failed to convert version"
            raise BadRequest(f"version {quote(version)} does not fit an int64; expected a number "
                             f"from 0 to {MAX_VERSION}")
        if m["verb"]:
            allow(req, "POST")
            return self.predict_job(req, self.codec, Call(name, version or "", m["verb"]), version)
        allow(req, "GET", "HEAD")
        if m["meta"]:
            return self.read_job(lambda model: json_response(200, metadata(name, model)),
                                 name, version)
        return self.status(name, version)

    def status(self, name: str, version: Optional[str]) -> Response:
        """``GetModelStatus``: AVAILABLE, LOADING, or END with the load's error."""
        found, state, code, message = model_status(self, name, version)
        return json_response(200, {"model_version_status": [{
            "version": str(found), "state": state,
            "status": {"error_code": ERROR_CODES[code], "error_message": message}}]})


#: google.rpc codes a model's status carries, by number (REST writes the name)
ERROR_CODES = {0: "OK", 2: "UNKNOWN"}


def model_status(routes: Routes, name: str, version: Optional[str]) -> Tuple[int, str, int, str]:
    """What ``GetModelStatus`` says over REST and gRPC: the version (the loaded one, else the
    one asked for, else 0), the state (AVAILABLE, LOADING, or END with the load's error as
    ``UNKNOWN``, error code 2)."""
    holder = routes.holder
    model = routes.loaded_version(name, version)
    if model is not None and holder.serving:
        state, code, message = "AVAILABLE", 0, ""
    elif holder.state == "failed":
        state, code, message = "END", 2, holder.error or ""
    else:
        state, code, message = "LOADING", 0, ""
    # not loaded yet: the version asked for (as a number), else 0 as TF Serving
    found = model_version(model) if model is not None else version_number(version or "") or 0
    return found, state, code, message


def _tensor(spec: TensorSpec) -> Dict[str, Any]:
    shape: Dict[str, Any] = {"dim": [], "unknown_rank": spec.shape is None}
    if spec.shape is not None:
        shape["dim"] = [{"size": str(d), "name": ""} for d in spec.shape]
    return {"dtype": dtype_name(spec.dtype), "tensor_shape": shape, "name": spec.tensor}


def metadata(name: str, model: Servable) -> Dict[str, Any]:
    """``GetModelMetadata`` as TF Serving's REST API writes it."""
    defs = {k: {"inputs": {a: _tensor(s) for a, s in sorted(sig.inputs.items())},
                "outputs": {a: _tensor(s) for a, s in sorted(sig.outputs.items())},
                "method_name": sig.method, "defaults": {}}
            for k, sig in sorted(model.signatures.items())}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(model_version(model))},
            "metadata": {"signature_def": {"signature_def": defs}}}


__all__ = ["ERROR_CODES", "PREFIX", "TFServingRoutes", "metadata", "model_status"]
