"""TF Serving's messages around the tensors, by hand: ``ModelSpec`` (field 1 of every request),
``GetModelMetadata``'s request and its ``signature_def`` reply, ``GetModelStatus``'s reply
(``tensorflow_serving/apis/{model,get_model_metadata,get_model_status}.proto``)."""

from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..errors import BadRequest
from .signature import Signature, TensorSpec
from .tensor_proto import Part, frame, refused, shape_parts, text_field
from .text import quote
from .wire import (
    Buffer,
    Malformed,
    delimited,
    read_key,
    read_varint,
    skip_field,
    span,
    utf8,
    varint_bytes,
    view,
)


class ModelSpec(NamedTuple):
    name: str = ""
    version: Optional[int] = None  # google.protobuf.Int64Value: None when absent
    label: str = ""  # version_label (a oneof with version: the last one sent wins)
    signature_name: str = ""


_TEXTS = {0x0A: "name", 0x1A: "signature_name", 0x22: "label"}  # key -> ModelSpec string field


def merge_spec(spec: ModelSpec, buf: memoryview, pos: int, end: int) -> ModelSpec:
    """``spec`` with one occurrence of a ModelSpec message merged in, as protobuf merges."""
    values = spec._asdict()
    while pos < end:
        key, pos = read_key(buf, pos, end)
        if key in _TEXTS or key == 0x12:
            start, pos = span(buf, pos, end, "model_spec")
            if key == 0x12:  # version: Int64Value{int64 value = 1}, merged; clears version_label
                values["version"] = _int64_value(buf, start, pos, values["version"] or 0)
                values["label"] = ""
            else:
                values[_TEXTS[key]] = utf8(buf, start, pos, f"model_spec.{_TEXTS[key]}")
                if key == 0x22:
                    values["version"] = None
        else:
            pos = skip_field(buf, pos, end, key & 7)
    return ModelSpec(**values)


def _int64_value(buf: memoryview, pos: int, end: int, value: int) -> int:
    while pos < end:
        key, pos = read_key(buf, pos, end)
        if key == 0x08:
            v, pos = read_varint(buf, pos, end)
            value = v - (1 << 64) if v >> 63 else v
        else:
            pos = skip_field(buf, pos, end, key & 7)
    return value


def read_spec(body: Buffer) -> ModelSpec:
    """The ``model_spec`` (field 1) of any TF Serving request (Predict, Classify, Regress,
    GetModelMetadata, GetModelStatus); every other field is skipped, validated as protobuf
    would.  Absent: ``ModelSpec()``."""
    return _read(body, "TF Serving request (model_spec = field 1)")[0]


def _read(body: Buffer, message: str) -> Tuple[ModelSpec, bool]:
    buf = view(body)
    spec, present = ModelSpec(), False
    try:
        for _, start, stop in delimited(buf, 0, len(buf), {0x0A: "model_spec"}):
            spec, present = merge_spec(spec, buf, start, stop), True
    except Malformed as e:
        raise refused(e, message) from None
    return spec, present


def encode_spec(spec: ModelSpec) -> bytes:
    """A serialized ModelSpec (version, when given, as its Int64Value)."""
    out = [text_field(1, spec.name)]
    if spec.version is not None:
        value = b"\x08" + varint_bytes(spec.version) if spec.version else b""
        out.append(b"\x12" + varint_bytes(len(value)) + value)
    out += [text_field(3, spec.signature_name), text_field(4, spec.label)]
    return b"".join(out)


# --- GetModelMetadata -----------------------------------------------------------------------

SIGNATURE_DEF = "signature_def"
SIGNATURE_DEF_MAP = "type.googleapis.com/tensorflow.serving.SignatureDefMap"


def read_metadata_request(body: Buffer) -> ModelSpec:
    """A GetModelMetadataRequest's model_spec, refused as TF Serving refuses it: no model_spec,
    no metadata_field, or one other than ``signature_def``."""
    what = "tensorflow.serving.GetModelMetadataRequest"
    spec, present = _read(body, what)
    if not present:
        raise BadRequest("GetModelMetadataRequest has no model_spec; expected one naming the model")
    buf, pos, fields = view(body), 0, 0
    try:
        while pos < len(buf):
            key, pos = read_key(buf, pos, len(buf))
            if key != 0x12:
                pos = skip_field(buf, pos, len(buf), key & 7)
                continue
            start, pos = span(buf, pos, len(buf), "metadata_field")
            field = utf8(buf, start, pos, "metadata_field")
            if field != SIGNATURE_DEF:
                raise BadRequest(f"metadata_field {quote(field)} is not supported; expected "
                                 f"{SIGNATURE_DEF!r}")
            fields += 1
    except Malformed as e:
        raise refused(e, what) from None
    if not fields:
        raise BadRequest("GetModelMetadataRequest must specify at least one metadata_field; "
                         f"expected {SIGNATURE_DEF!r}")
    return spec


def _tensor_info(spec: TensorSpec) -> List[Part]:
    out: List[Part] = [text_field(1, spec.tensor), b"\x10" + varint_bytes(spec.dtype)]
    return out + frame(3, shape_parts(spec.shape))


def _tensor_map(field: int, specs: Mapping[str, TensorSpec]) -> List[Part]:
    out: List[Part] = []
    for alias in sorted(specs):
        out += frame(field, [text_field(1, alias), *frame(2, _tensor_info(specs[alias]))])
    return out


def signature_def(sig: Signature) -> List[Part]:
    """A SignatureDef's fields (inputs = 1, outputs = 2, method_name = 3)."""
    return [*_tensor_map(1, sig.inputs), *_tensor_map(2, sig.outputs), text_field(3, sig.method)]


def encode_metadata_response(name: str, version: Optional[int],
                             signatures: Mapping[str, Signature]) -> bytes:
    """A GetModelMetadataResponse: model_spec {name, version} and ``signature_def``, a
    SignatureDefMap packed in an Any, as TF Serving answers."""
    sig_map: List[Part] = []
    for key in sorted(signatures):
        sig_map += frame(1, [text_field(1, key), *frame(2, signature_def(signatures[key]))])
    packed = [text_field(1, SIGNATURE_DEF_MAP), *frame(2, sig_map)]
    entry = [text_field(1, SIGNATURE_DEF), *frame(2, packed)]
    return b"".join([*frame(1, [encode_spec(ModelSpec(name, version))]), *frame(2, entry)])


# --- GetModelStatus -------------------------------------------------------------------------

#: ModelVersionStatus.State
STATES: Dict[str, int] = {"UNKNOWN": 0, "START": 10, "LOADING": 20, "AVAILABLE": 30,
                          "UNLOADING": 40, "END": 50}


class VersionStatus(NamedTuple):
    version: int
    state: str  # a key of STATES
    error_code: int = 0  # tensorflow.error.Code (the gRPC status codes' numbers): 0 is OK
    error_message: str = ""


def encode_status_response(statuses: Sequence[VersionStatus]) -> bytes:
    """A GetModelStatusResponse, one ModelVersionStatus per entry (status always set, as TF
    Serving sets it)."""
    out: List[Part] = []
    for s in statuses:
        code = b"\x08" + varint_bytes(s.error_code) if s.error_code else b""
        status = frame(3, [code, text_field(2, s.error_message)])
        version = b"\x08" + varint_bytes(s.version) if s.version else b""
        state = b"\x10" + varint_bytes(STATES[s.state]) if STATES[s.state] else b""
        out += frame(1, [version, state, *status])
    return b"".join(out)


__all__ = ["SIGNATURE_DEF", "SIGNATURE_DEF_MAP", "STATES", "ModelSpec",
           "VersionStatus", "encode_metadata_response", "encode_spec", "encode_status_response",
           "merge_spec", "read_metadata_request", "read_spec", "signature_def"]
