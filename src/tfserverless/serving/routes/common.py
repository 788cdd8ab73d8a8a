"""What every protocol's routes share: the ``Job`` a route hands the service, the ``Routes``
base (the config, holder and predictor a route uses; auth then the model's name; a URL's
version checked against the model; the JSON/binary size rules of a prediction), the
readiness answer, and the small table helpers."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

from ...backends.holder import ModelHolder
from ...backends.servable import Servable
from ...config import Config
from ...errors import MethodNotAllowed, NotFound, PayloadTooLarge
from ...messages import Request, Response, check_coding, check_size, decoded_body, is_encoded, json_response
from ...protocol.base import Call, Codec
from ...protocol.text import clip, quote
from ...versions import version_number, version_of
from ..auth import check_auth
from ..predictor import Context, Predictor

NO_CALL = Call()

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
    and says how many of its bytes are JSON.  ``call``: what the URL said (``call_for``: as
    the loaded model answers it)."""

    __slots__ = ("admitted", "call", "check", "codec", "prepare", "run")

    def __init__(self, run: Callable[[Servable, Context], Response], *, admitted: bool,
                 codec: Optional[Codec] = None, call: Call = NO_CALL,
                 check: Optional[Callable[[Servable], None]] = None,
                 prepare: Optional[Callable[[Request], int]] = None) -> None:
        self.run, self.admitted, self.codec, self.call, self.check = run, admitted, codec, call, check
        self.prepare = prepare

    def call_for(self, model: Servable) -> Call:
        """The call with the version the model answers as (the one loaded, however the URL
        wrote it, or named none); EAS's calls name no model and are as they are."""
        return self.call if not self.call.model else served_call(self.call, model)


#: what routing decides from a request's headers: a reply, a job, or (EAS's gateway, where an
#: empty body asks for the schema) the job to make once the body is read
Routed = Union[Response, Job, Callable[[Request], Job]]
#: a prefix's route: the request and its normalised path
Route = Callable[[Request, str], Routed]


def model_version(model: Servable) -> int:
    """The loaded model's version, as TF Serving numbers it: its ``<name>/<version>/``
    directory's number (``00000123/`` is 123), else 1.  JSON replies write it as a string
    (TF Serving's REST and V2 both do), gRPC as the int64 it is."""
    return version_of(model.path)


def is_version(asked: str, model: Servable) -> bool:
    """Whether the version a client named (``0123`` is 123) is the loaded model's."""
    return version_number(asked) == model_version(model)


def served_call(call: Call, model: Servable) -> Call:
    """``call`` naming the version ``model`` is (what V2 replies repeat)."""
    return call._replace(version=str(model_version(model)))


def no_version(name: str, asked: str, model: Servable) -> NotFound:
    """The 404 of a version that is not the loaded one, naming the one that is."""
    shown = asked if version_number(asked) is not None else quote(asked)
    return NotFound(f"model '{name}' version {shown} not found; serving version "
                    f"{model_version(model)}")


def ready_reply(ready: bool, body: Dict[str, Any]) -> Response:
    """A readiness answer: 200 when ready, else 503 with ``Retry-After: 1``."""
    return json_response(200 if ready else 503, body, None if ready else {"Retry-After": "1"})


def allow(req: Request, *allowed: str) -> None:
    """A 405 naming the allowed methods unless ``req``'s is one of them."""
    if req.method not in allowed:
        raise MethodNotAllowed(f"{clip(req.method)} {clip(req.path)}; expected {' or '.join(allowed)}",
                               headers={"Allow": ", ".join(allowed)})


def split_prefix(path: str, prefixes: Tuple[Tuple[str, Route], ...]) -> Optional[Route]:
    """The route of the first prefix ``path`` starts with (a small table, in order)."""
    for prefix, route in prefixes:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return route
    return None


class Routes:
    """A protocol's routes, given what they use."""

    def __init__(self, config: Config, holder: ModelHolder, predictor: Predictor) -> None:
        self.config, self.holder, self.predictor = config, holder, predictor

    def model_name(self, req: Request, name: str) -> str:
        """Auth first, then the name: only a caller with the token learns the real one."""
        self.authorize(req)
        return self.known_name(name)

    def authorize(self, req: Request) -> None:
        cfg = self.config
        check_auth(cfg.service_token, req, req.path, max_skew=cfg.signature_max_skew, body=False)

    def known_name(self, name: str) -> str:
        """``name`` if it is the model's (any, when ``SERVICE_NAME`` is unset), else a 404;
        ask only once the caller is authorised."""
        served = self.config.service_name
        if served and name != served:
            raise NotFound(f"model {quote(name)} not found; this function serves '{served}'")
        return name

    def loaded_version(self, name: str, version: Optional[str]) -> Optional[Servable]:
        """The model if loaded (a 404 if ``version`` is not its version), else None; a status
        or readiness probe is what first starts the load on an idle instance."""
        self.holder.start()
        model = self.holder.model
        if model is not None and version and not is_version(version, model):
            raise no_version(name, version, model)
        return model

    def version_check(self, name: str, version: Optional[str]) -> Optional[Callable[[Servable], None]]:
        if not version:
            return None

        def check(model: Servable) -> None:
            if not is_version(version, model):
                raise no_version(name, version, model)
        return check

    def predict_job(self, req: Request, codec: Codec, call: Call, version: Optional[str],
                    json_part: Optional[Callable[[Request], int]] = None) -> Job:
        """A JSON prediction (``json_part``: for a body that is only partly JSON, e.g. V2's
        binary tensors, how many of its leading bytes are): JSON is held to ``MAX_JSON_BYTES``
        before and after inflating, the whole body to ``MAX_BODY_BYTES``."""
        cfg = self.config
        check_coding(req)
        if json_part is not None or is_encoded(req):
            check_size(req, cfg.max_body_bytes, "MAX_BODY_BYTES")
        else:
            check_size(req, cfg.max_json_bytes, "MAX_JSON_BYTES")

        def prepare(req: Request) -> int:
            if json_part is not None:
                req.body = decoded_body(req, cfg.max_body_bytes, "MAX_BODY_BYTES")
                n = json_part(req)
            else:
                req.body = decoded_body(req, cfg.max_json_bytes, "MAX_JSON_BYTES")
                n = len(req.body)
            if n > cfg.max_json_bytes:
                raise PayloadTooLarge(f"JSON of {n} bytes is over the limit of "
                                      f"{cfg.max_json_bytes} bytes (MAX_JSON_BYTES; parsed JSON "
                                      "takes up to ~30x its size in memory); send "
                                      "binary tensors (V2) or smaller batches")
            return n

        pred = self.predictor
        return Job(lambda model, ctx: pred.predict(req, model, ctx, codec, served_call(call, model)),
                   admitted=True,
                   codec=codec, call=call, check=self.version_check(call.model, version),
                   prepare=prepare)

    def message_job(self, req: Request, codec: Codec, call: Call, version: Optional[str]) -> Job:
        """A prediction whose body is one protobuf message (a gRPC call's: complete, with no
        Content-Encoding of its own), held to ``MAX_BODY_BYTES``."""
        check_size(req, self.config.max_body_bytes, "MAX_BODY_BYTES")
        pred = self.predictor
        return Job(lambda model, ctx: pred.predict(req, model, ctx, codec, served_call(call, model)),
                   admitted=True, codec=codec, call=call,
                   check=self.version_check(call.model, version))

    def read_job(self, respond: Callable[[Servable], Response], name: str,
                 version: Optional[str]) -> Job:
        """A read of the loaded model (metadata), answered once it is there."""
        check = self.version_check(name, version)

        def run(model: Servable, ctx: Context) -> Response:
            if check is not None:
                check(model)
            return respond(model)
        return Job(run, admitted=False)


__all__ = ["JSON_WEIGHT", "NO_CALL", "Job", "Route", "Routed", "Routes", "allow", "is_version",
           "model_version", "no_version", "ready_reply", "served_call", "split_prefix"]
