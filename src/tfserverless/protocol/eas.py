"""PAI-EAS's TensorFlow protocol (``proto/predict.proto``): ``PredictRequest`` bytes -> arrays,
arrays -> ``PredictResponse`` bytes, by hand (see ``wire``), and the ``EAS`` codec the service
uses.  Imports no TensorFlow."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np

from ..errors import BadRequest
from .base import Call, Decoded, Signatures
from .dtypes import ARRAY_PROTO, F_DTYPE, F_SHAPE, F_STRING, MAX_STRINGS, check_strings, dtype_for_numpy
from .eas_array import FIXED, MAX_INPUTS, MAX_OUTPUT_FILTER, WireArray
from .entries import read_entry
from .signature import feeds_for_signature, output_names
from .wire import Buffer, Malformed, delimited, encode_varints, tagged, utf8, varint_bytes, view

#: PredictRequest's length-delimited fields: signature_name = 1, inputs = 2, output_filter = 3
_REQUEST_FIELDS = {0x0A: "a field", 0x12: "a field", 0x1A: "a field"}


class WireRequest(NamedTuple):
    signature_name: str
    inputs: Dict[str, WireArray]
    output_filter: List[str]


def decode_request(body: Buffer) -> WireRequest:
    """Parse a serialized PredictRequest (protobuf semantics: last scalar wins, maps replace,
    messages merge).  Every input is validated and counted here; values are decoded later by
    ``WireArray.to_numpy``, straight from ``body``."""
    buf = view(body)
    signature = ""
    inputs: Dict[str, WireArray] = {}
    output_filter: List[str] = []
    for key, start, stop in delimited(buf, 0, len(buf), _REQUEST_FIELDS):
        if key == 0x0A:
            signature = utf8(buf, start, stop, "signature_name")
        elif key == 0x1A:
            if len(output_filter) >= MAX_OUTPUT_FILTER:
                raise Malformed(f"more than {MAX_OUTPUT_FILTER} output_filter entries")
            output_filter.append(utf8(buf, start, stop, "output_filter"))
        else:
            name, arr = read_entry(buf, start, stop, ARRAY_PROTO, "an input name")
            if name not in inputs and len(inputs) >= MAX_INPUTS:
                raise Malformed(f"more than {MAX_INPUTS} inputs")
            inputs[name] = arr
    for name, arr in inputs.items():
        arr.scan(MAX_STRINGS)  # a string element is an object apiece: refused before any is made
        check_strings(name, arr.count(F_STRING), counted_all=False)
    return WireRequest(signature, inputs, output_filter)


# --- encoding --------------------------------------------------------------------------------


def encode_array(array: np.ndarray) -> bytes:
    """One ArrayProto: dtype, shape, and the values packed in the field the dtype uses."""
    dt = dtype_for_numpy(array)
    dims = b"".join(varint_bytes(d) for d in array.shape)
    out = [bytes((F_DTYPE << 3, dt.code)), tagged(F_SHAPE, tagged(1, dims) if dims else b"")]
    flat = array.reshape(-1)
    if dt.field == F_STRING:
        out.extend(tagged(F_STRING, _as_bytes(v)) for v in flat)
    elif flat.size:
        if dt.field in FIXED:
            payload = np.ascontiguousarray(flat, dtype=FIXED[dt.field][2]).tobytes()
        elif dt.code == 10:
            payload = flat.astype(np.uint8).tobytes()
        elif dt.code == 19:
            payload = encode_varints(flat.astype(np.float16).view(np.uint16))
        else:
            payload = encode_varints(flat)
        out.append(tagged(dt.field, payload))
    return b"".join(out)


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


def encode_response(outputs: Dict[str, np.ndarray]) -> bytes:
    """A serialized PredictResponse with every output in name order."""
    parts = []
    for name in sorted(outputs):
        entry = tagged(1, name.encode("utf-8")) + tagged(2, encode_array(np.asarray(outputs[name])))
        parts.append(tagged(1, entry))
    return b"".join(parts)


def encode_request(
    inputs: Dict[str, np.ndarray],
    *,
    signature_name: str = "",
    output_filter: Sequence[str] = (),
) -> bytes:
    """A serialized PredictRequest (used by warm-up files, benchmarks and tests)."""
    parts = []
    if signature_name:
        parts.append(tagged(1, signature_name.encode("utf-8")))
    for name in sorted(inputs):
        entry = tagged(1, name.encode("utf-8")) + tagged(2, encode_array(np.asarray(inputs[name])))
        parts.append(tagged(2, entry))
    parts.extend(tagged(3, f.encode("utf-8")) for f in output_filter)
    return b"".join(parts)


def decode_response(body: Buffer) -> Dict[str, np.ndarray]:
    """Parse a PredictResponse into arrays (clients, warm-up checks and tests)."""
    buf = view(body)
    out: Dict[str, np.ndarray] = {}
    for _, start, stop in delimited(buf, 0, len(buf), {0x0A: "an outputs entry"}):
        name, arr = read_entry(buf, start, stop, ARRAY_PROTO, "an output name")
        arr.scan()
        out[name] = arr.to_numpy(name)
    return out


class EAS:
    """The ``Codec`` of EAS's protobuf (``/`` and ``/api/predict/<service>``)."""

    name = "eas"

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        if body[:64].lstrip()[:1] in (b"{", b"["):
            # '{' and '[' would open protobuf groups (fields 15 and 11), which PredictRequest
            # never has: such a body is not protobuf, most likely JSON
            raise BadRequest(
                "JSON bodies are not accepted here; expected a serialized PredictRequest "
                "protobuf (proto/predict.proto, Content-Type application/octet-stream), e.g. "
                "from the EAS SDK's TFRequest.to_string(); JSON goes to /v1/models/<name>:predict "
                "(TF Serving REST) or /v2/models/<name>/infer (Open Inference Protocol)")
        wire = decode_request(body)
        sig = model.signature(wire.signature_name)
        return Decoded(sig, feeds_for_signature(wire.inputs, sig), output_names(wire.output_filter, sig))

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        return encode_response(outputs), {"Content-Type": "application/octet-stream"}
