"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService/ModelInfer``, as
``tritonclient.grpc`` speaks it): ``ModelInferRequest`` bytes -> feeds, the model's outputs ->
``ModelInferResponse`` bytes.  grpcio hands the codec raw bytes; the project's own wire
decoder reads them (``v2_grpc_request``), so no protobuf runtime is in the request path.

Inputs carry their values in typed ``contents`` or in ``raw_input_contents`` (one buffer per
input, in input order: little-endian, BOOL one byte, BYTES each a 4-byte little-endian length
and its bytes, FP16 raw only).  Parameters mean what they mean over HTTP (``v2``):
``signature_name`` picks the signature, ``classification`` is refused.  Outputs come back in
``raw_output_contents`` (what Triton sends and ``InferResult.as_numpy`` reads) unless the
request asks for none binary (``binary_data_output`` false, or every output's ``binary_data``
false): then in typed ``contents``, if every output's datatype has a field there (the two
ways cannot be mixed in one reply).  Imports no TensorFlow.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np

from ..errors import BadRequest
from .base import Call, Decoded, Signatures
from .dtypes import dtype_for_numpy
from .grpc_wire import ints_field, message_field, read_strings, reading, string_field
from .signature import check_names, feeds_for_signature, output_names
from .v2 import MAX_TENSORS, binary_data
from .v2_grpc_contents import FIELD_OF, encode_contents
from .v2_grpc_request import InputTensor, Param, read_infer_request
from .wire import Buffer, varint_bytes

INFER_REQUEST = "inference.ModelInferRequest (grpc_service.proto)"
CONTENT_TYPE = {"Content-Type": "application/grpc"}
_RAW_OUTPUT = varint_bytes(6 << 3 | 2)  # raw_output_contents' key


class InferForm(NamedTuple):
    """What ``V2Grpc.encode`` needs of the request: its id, the outputs it asked for with
    their parameters, and whether the reply carries raw_output_contents."""

    id: str
    outputs: Dict[str, Dict[str, Param]]
    raw: bool


def read_model(body: Buffer, message: str = INFER_REQUEST) -> Tuple[str, str]:
    """The model name and version (fields 1 and 2) of a ``ModelInferRequest``, read before
    the rest (routing); ``ModelReadyRequest``, ``ModelMetadataRequest``, ``ModelConfigRequest``
    and ``ModelStatisticsRequest`` hold them as the same fields (say which in ``message``)."""
    name, version = read_strings(body, ("model_name", "model_version"), message)
    return name, version


class V2Grpc:
    """The ``Codec`` of ``inference.GRPCInferenceService/ModelInfer``."""

    name = "v2-grpc"

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        with reading(INFER_REQUEST):
            req = read_infer_request(body)
            sig_name = req.parameters.get("signature_name", "")
            if not isinstance(sig_name, str):
                raise BadRequest('"parameters" "signature_name" must be a string')
            sig = model.signature(sig_name)
            if not req.inputs:
                raise BadRequest(f"the request holds no inputs; expected 1 to {MAX_TENSORS}")
            if len(req.raw) > len(req.inputs):
                raise BadRequest(f"the request holds {len(req.raw)} raw_input_contents for "
                                 f"{len(req.inputs)} inputs; expected one per input at most, in "
                                 "input order")
            given: Dict[str, InputTensor] = {}
            for i, t in enumerate(req.inputs):
                check_names([t.name], sig, complete=False)
                t.check(req.raw[i] if i < len(req.raw) else None)
                given[t.name] = t
            asked: Dict[str, Dict[str, Param]] = {}
            for o in req.outputs:
                for param, why in _REFUSED_OUTPUT_PARAMS.items():
                    if param in o.parameters:
                        raise BadRequest(why)
                asked[o.name] = o.parameters
            names = output_names(list(asked), sig, "output")
            feeds = feeds_for_signature(given, sig)
        form = InferForm(req.id, {k: asked.get(k, {}) for k in names},
                         _raw_outputs(req.parameters, list(asked.values())))
        return Decoded(sig, feeds, names, form)

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        form = decoded.form
        body = encode_infer_response(outputs, decoded.outputs, model=call.model,
                                     version=call.version or "1", request_id=form.id, raw=form.raw)
        return body, dict(CONTENT_TYPE)


_REFUSED_OUTPUT_PARAMS = {
    "classification": "the classification extension is not supported; ask for the output "
                      "tensor itself",
    "shared_memory_region": "outputs in shared memory are not supported; expected them in the "
                            "reply",
}


def _raw_outputs(params: Dict[str, Param], asked: List[Dict[str, Param]]) -> bool:
    """Whether the reply carries raw_output_contents: unless ``binary_data`` (each output's,
    by default the request's ``binary_data_output``) is false for every output."""
    default = params.get("binary_data_output", True)
    return any(p.get("binary_data", default) is not False for p in asked) if asked else \
        default is not False


def encode_infer_response(outputs: Mapping[str, np.ndarray], names: Sequence[str], *, model: str,
                          version: str, request_id: str = "", raw: bool = True) -> bytes:
    """A serialized ``ModelInferResponse`` holding ``outputs[k]`` for each of ``names`` in that
    order: raw_output_contents when ``raw`` (or some datatype has no typed field), else each
    output's typed contents."""
    arrays = [np.asarray(outputs[k]) for k in names]
    dts = [dtype_for_numpy(a) for a in arrays]
    raw = raw or any(dt.v2 not in FIELD_OF for dt in dts)
    parts = [string_field(1, model), string_field(2, version), string_field(3, request_id)]
    blobs: List[bytes] = []
    for k, a, dt in zip(names, arrays, dts):
        flat = a.reshape(-1)
        tensor = string_field(1, k) + string_field(2, dt.v2) + ints_field(3, a.shape)
        if raw:
            blobs.append(binary_data(flat, dt.numpy))
        else:
            tensor += message_field(5, encode_contents(flat, dt.v2))
        parts.append(message_field(5, tensor))
    for blob in blobs:  # each written once, after its key and length (no copy per layer)
        parts += [_RAW_OUTPUT, varint_bytes(len(blob)), blob]
    return b"".join(parts)


__all__ = ["CONTENT_TYPE", "INFER_REQUEST", "InferForm", "V2Grpc", "encode_infer_response",
           "read_model"]
