"""TF Serving's gRPC ``PredictionService`` messages as a ``Codec``: ``PredictRequest``,
``ClassificationRequest`` and ``RegressionRequest`` bytes (what grpcio hands a generic handler)
-> feeds, outputs -> the matching response bytes, with the project's own wire decoder (no
protobuf runtime in the request path).  ``tensor_proto`` reads and writes the tensors,
``tfs_examples`` the example-based methods, ``tfs_messages`` ModelSpec, metadata and status."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import BadRequest
from .base import Call, Decoded, Signatures
from .dtypes import TENSOR_PROTO
from .eas_array import MAX_INPUTS, MAX_OUTPUT_FILTER, WireArray
from .entries import read_entry
from .signature import DEFAULT_KEY, Signature, feeds_for_signature, output_names
from .tensor_proto import Part, frame, refused, scanned, tensor_parts, text_field
from .text import quote
from .tfs_examples import Form, decode_input, encode_examples_response, examples_decoded, merged
from .tfs_messages import ModelSpec, encode_spec, merge_spec
from .wire import Buffer, Malformed, delimited, utf8, view

GRPC = {"Content-Type": "application/grpc"}
_PREDICT_FIELDS = {0x0A: "model_spec", 0x12: "an inputs entry", 0x1A: "output_filter"}
_EXAMPLES_FIELDS = {0x0A: "model_spec", 0x12: "input"}  # ClassificationRequest, RegressionRequest


class PredictWire(NamedTuple):
    spec: ModelSpec
    inputs: Dict[str, WireArray]  # scanned: ``to_numpy`` builds each
    output_filter: List[str]


def decode_predict(body: Buffer) -> PredictWire:
    """Parse a serialized PredictRequest (protobuf semantics: last scalar wins, map entries
    replace, messages merge).  Every input is validated and counted here; values are decoded
    by ``WireArray.to_numpy``, straight from ``body``."""
    buf = view(body)
    spec = ModelSpec()
    inputs: Dict[str, WireArray] = {}
    output_filter: List[str] = []
    try:
        for key, start, pos in delimited(buf, 0, len(buf), _PREDICT_FIELDS):
            if key == 0x0A:
                spec = merge_spec(spec, buf, start, pos)
            elif key == 0x12:
                name, arr = read_entry(buf, start, pos, TENSOR_PROTO, "a tensor name")
                if name not in inputs and len(inputs) >= MAX_INPUTS:
                    raise Malformed(f"more than {MAX_INPUTS} inputs")
                inputs[name] = arr
            elif len(output_filter) >= MAX_OUTPUT_FILTER:
                raise Malformed(f"more than {MAX_OUTPUT_FILTER} output_filter entries")
            else:
                output_filter.append(utf8(buf, start, pos, "output_filter"))
        for name, arr in inputs.items():
            scanned(arr, name)
    except Malformed as e:
        raise refused(e, "tensorflow.serving.PredictRequest") from None
    return PredictWire(spec, inputs, output_filter)


def encode_predict_response(outputs: Mapping[str, Any], spec: ModelSpec) -> bytes:
    """A serialized PredictResponse: every output (by name) as TF Serving writes tensors, and
    ``spec``."""
    parts: List[Part] = []
    for name in sorted(outputs):
        parts += frame(1, [text_field(1, name), *frame(2, tensor_parts(outputs[name]))])
    parts += frame(2, [encode_spec(spec)])
    return b"".join(parts)


def read_examples_request(body: Buffer, message: str) -> Tuple[ModelSpec, np.ndarray]:
    """A ClassificationRequest or RegressionRequest (model_spec = 1, input = 2): its spec and
    its examples (``decode_input``)."""
    buf = view(body)
    spec = ModelSpec()
    spans: List[Tuple[int, int]] = []
    try:
        for key, start, pos in delimited(buf, 0, len(buf), _EXAMPLES_FIELDS):
            if key == 0x0A:
                spec = merge_spec(spec, buf, start, pos)
            else:
                spans.append((start, pos))
        examples = decode_input(merged(buf, spans) if spans else b"")
    except Malformed as e:
        raise refused(e, f"tensorflow.serving.{message}") from None
    return spec, examples


def signature_for(model: Signatures, name: str) -> Signature:
    """The signature a model_spec names: '' is ``serving_default`` where the model has one (TF
    Serving's default, whatever its kind), else the model's default, as the REST codec."""
    if not name and DEFAULT_KEY in model.signatures:
        name = DEFAULT_KEY
    return model.signature(name)


def version_number(version: str) -> Optional[int]:
    """A served version as ModelSpec's Int64Value carries it (None: not a number)."""
    try:
        v = int(version)
    except ValueError:
        return None
    return v if -(1 << 63) <= v < (1 << 63) else None


def _predict(body: bytes, model: Signatures) -> Decoded:
    wire = decode_predict(body)
    sig = signature_for(model, wire.spec.signature_name)
    return Decoded(sig, feeds_for_signature(wire.inputs, sig),
                   output_names(wire.output_filter, sig), Form("predict"))


def _examples(verb: str, message: str) -> Callable[[bytes, Signatures], Decoded]:
    def decode(body: bytes, model: Signatures) -> Decoded:
        spec, examples = read_examples_request(body, message)
        return examples_decoded(signature_for(model, spec.signature_name), verb, examples)
    return decode


DECODERS: Dict[str, Callable[[bytes, Signatures], Decoded]] = {
    "predict": _predict,
    "classify": _examples("classify", "ClassificationRequest"),
    "regress": _examples("regress", "RegressionRequest"),
}


class TFServingGrpc:
    """The ``Codec`` of ``tensorflow.serving.PredictionService``'s Predict, Classify and Regress
    (``call.verb``): the body is the whole request message, the reply the response message."""

    name = "tfserving-grpc"

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        decoder = DECODERS.get(call.verb)
        if decoder is None:
            raise BadRequest(f"TF Serving gRPC has no method {quote(call.verb)} here; expected "
                             f"one of {', '.join(DECODERS)}")
        return decoder(body, model)

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        form: Form = decoded.form
        spec = ModelSpec(call.model, version_number(call.version), "", decoded.sig.name)
        if form.verb == "predict":
            return encode_predict_response(outputs, spec), dict(GRPC)
        return encode_examples_response(form.verb, spec, outputs, form.rows), dict(GRPC)


__all__ = ["DECODERS", "GRPC", "PredictWire", "TFServingGrpc", "decode_predict",
           "encode_predict_response", "read_examples_request", "signature_for", "version_number"]
