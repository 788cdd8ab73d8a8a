"""TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and ``ModelService``, as
``tensorflow-serving-api``'s stubs call them): a table of methods.  Each reads the request's
``model_spec`` once the caller is authorised and resolves name, version and label as the REST
API resolves them (``routes.tfserving``); predictions become a ``Job`` through the same
admission, batching and model as every protocol's.  ``MultiInference`` runs its tasks' classify
and regress signatures on the one input, in the one admitted slot."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ...backends.servable import Servable
from ...errors import NotFound, NotImplementedHere
from ...messages import Request, Response
from ...protocol.base import Call, Decoded, Signatures
from ...protocol.tfs_examples import (
    Form,
    TaskResult,
    decode_input,
    encode_multi,
    encode_result,
    examples_decoded,
    read_multi,
)
from ...protocol.tfs_grpc import TFServingGrpc, signature_for
from ...protocol.tfs_messages import (
    ModelSpec,
    VersionStatus,
    encode_metadata_response,
    encode_status_response,
    read_metadata_request,
    read_spec,
)
from ..predictor import Context
from .common import Job, Routed, Routes, allow, model_version
from .tfserving import model_status

PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL = "/tensorflow.serving.ModelService/"
GRPC = {"Content-Type": "application/grpc"}


def reply(body: bytes) -> Response:
    return Response(200, body, dict(GRPC))


class TFServingGrpcRoutes(Routes):
    codec = TFServingGrpc()

    def methods(self) -> Dict[str, Callable[[Request], Routed]]:
        """Each method's full name -> its route."""
        return {path: self._entry(route) for path, route in _METHODS.items()}

    def _entry(self, route: Callable[[TFServingGrpcRoutes, Request], Routed],
               ) -> Callable[[Request], Routed]:
        def enter(req: Request) -> Routed:
            allow(req, "POST")
            req.protocol = self.codec.name
            return route(self, req)
        return enter

    def _spec(self, req: Request, read: Callable[[Any], ModelSpec] = read_spec) -> ModelSpec:
        """Auth, then the ``model_spec`` (field 1 of every request here): the name, and a
        label as the REST API answers one (this function serves one version)."""
        self.authorize(req)
        return self._known(read(req.body))

    def _known(self, spec: ModelSpec) -> ModelSpec:
        self.known_name(spec.name)
        if spec.label:
            raise NotFound(f"version label '{spec.label[:100]}' not found; this function serves "
                           f"one version of '{spec.name}' (set model_spec.version, or neither)")
        return spec

    def _call(self, req: Request, verb: str) -> Routed:
        spec = self._spec(req)
        version = _version(spec.version)
        return self.message_job(req, self.codec, Call(spec.name, version or "", verb), version)

    def predict(self, req: Request) -> Routed:
        return self._call(req, "predict")

    def classify(self, req: Request) -> Routed:
        return self._call(req, "classify")

    def regress(self, req: Request) -> Routed:
        return self._call(req, "regress")

    def multi_inference(self, req: Request) -> Routed:
        """Each task a classify or regress of the same model on the one input, run one after
        another within the request's admitted slot (the predictor's path: batching, metrics)."""
        self.authorize(req)
        tasks, given = read_multi(req.body)
        for task in tasks:
            self._known(task.spec)
        versions = {task.spec.version for task in tasks}
        version = _version(versions.pop()) if len(versions) == 1 else None
        pred = self.predictor

        def run(model: Servable, ctx: Context) -> Response:
            examples = decode_input(given)
            served = model_version(model)
            results: List[TaskResult] = []
            for task in tasks:
                codec = _TaskCodec(task.spec.signature_name, task.verb, examples)
                d, outputs = pred.run_predict(model, b"", ctx, codec=codec, call=Call(
                    task.spec.name, str(served), task.verb))
                rows = d.form.rows if isinstance(d.form, Form) else len(examples)
                spec = ModelSpec(task.spec.name, int(served), signature_name=d.sig.name)
                results.append(TaskResult(spec, task.verb, encode_result(task.verb, outputs, rows)))
            return reply(encode_multi(results))

        return Job(run, admitted=True, check=self.version_check(tasks[0].spec.name, version))

    def metadata(self, req: Request) -> Routed:
        spec = self._spec(req, read_metadata_request)
        return self.read_job(lambda m: reply(encode_metadata_response(
            spec.name, int(model_version(m)), m.signatures)), spec.name, _version(spec.version))

    def status(self, req: Request) -> Response:
        spec = self._spec(req)
        version = _version(spec.version)
        found, state, code, message = model_status(self, spec.name, version)
        return reply(encode_status_response([VersionStatus(int(found), state, code, message)]))

    def reload(self, req: Request) -> Response:
        self.authorize(req)
        raise NotImplementedHere("HandleReloadConfigRequest: this server serves the one model "
                                 "MODEL_PATH names, fixed at deploy time; expected a redeploy "
                                 "to change it")


def _version(v: Optional[int]) -> Optional[str]:
    return None if v is None else str(v)


class _TaskCodec:
    """One MultiInference task as the predictor's ``Codec``: the examples already read, run
    through ``signature_name`` as ``verb`` (its reply is written by the route)."""

    name = "tfserving-grpc"

    def __init__(self, signature_name: str, verb: str, examples: np.ndarray) -> None:
        self.signature_name, self.verb, self.examples = signature_name, verb, examples

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        return examples_decoded(signature_for(model, self.signature_name), self.verb,
                                self.examples)

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        raise AssertionError("a task's reply is part of MultiInferenceResponse")


_METHODS: Dict[str, Callable[[TFServingGrpcRoutes, Request], Routed]] = {
    PREDICTION + "Predict": TFServingGrpcRoutes.predict,
    PREDICTION + "Classify": TFServingGrpcRoutes.classify,
    PREDICTION + "Regress": TFServingGrpcRoutes.regress,
    PREDICTION + "MultiInference": TFServingGrpcRoutes.multi_inference,
    PREDICTION + "GetModelMetadata": TFServingGrpcRoutes.metadata,
    MODEL + "GetModelStatus": TFServingGrpcRoutes.status,
    MODEL + "HandleReloadConfigRequest": TFServingGrpcRoutes.reload,
}


__all__ = ["MODEL", "PREDICTION", "TFServingGrpcRoutes"]
