"""The Open Inference Protocol (V2: KServe, Triton): ``POST /v2/models/<name>/infer`` with
JSON tensors and the binary tensor data extension, as ``tritonclient.http`` speaks it.

A body with an ``Inference-Header-Content-Length`` header is that many bytes of JSON, then
the raw data of each input whose ``parameters.binary_data_size`` is set, in input order
(little-endian; BOOL one byte; BYTES each a 4-byte little-endian length and its bytes).
Outputs asked for with ``parameters.binary_data`` (or all, with the request's
``binary_data_output``) come back the same way.  Imports no TensorFlow.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Mapping, Tuple

import numpy as np

from ..errors import BadRequest
from . import jsonfast
from .base import Call, Decoded, Signatures
from .dtypes import (
    BY_V2,
    MAX_DIM,
    MAX_RANK,
    V2_NAMES,
    check_dims,
    check_strings,
    dtype_for_numpy,
)
from .jsonio import bool_words, dumps, loads
from .signature import Given, TensorSpec, check_names, feeds_for_signature, output_names
from .text import quote
from .tfserving import once, to_array

HEADER = "inference-header-content-length"
MAX_TENSORS = 4096
LENGTH_PREFIX = 4  # bytes before each BYTES element of binary data: its uint32 length
MAX_LENGTH_DIGITS = 20  # of an Inference-Header-Content-Length: no body is longer


def _dict(obj: Any, what: str) -> Dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return obj


def header_length(value: str, body_len: int) -> int:
    """The JSON part's length an ``Inference-Header-Content-Length`` value gives, or a 400:
    ASCII digits only (``str.isdigit`` takes superscript digits, which ``int`` refuses), at
    most ``MAX_LENGTH_DIGITS`` of them (``int`` refuses over 4300 digits), and a value no
    larger than ``body_len``.  Routes call it too, on the header they size the JSON by."""
    if not (0 < len(value) <= MAX_LENGTH_DIGITS and value.isascii() and value.isdigit()) \
            or int(value) > body_len:
        raise BadRequest(f"Inference-Header-Content-Length {quote(value)} is not a length within "
                         f"the body of {body_len} bytes; expected 1 to {MAX_LENGTH_DIGITS} ASCII "
                         f"digits, at most {body_len}")
    return int(value)


def _params(holder: Dict[str, Any], what: str) -> Dict[str, Any]:
    """``holder``'s "parameters": absent or null is none; anything but an object is a 400
    (a list was silently ignored on inputs and outputs)."""
    params = holder.get("parameters")
    return {} if params is None else _dict(params, what)


def _echoable(value: Any, what: str) -> None:
    """A 400 now, before the model runs, for a string the reply repeats that no reply could
    carry (a lone surrogate: the standard library's JSON parser reads ``"\\ud800"``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(f"{what} holds {value[e.start]!r} at character {e.start}, a lone "
                             "surrogate; expected text (surrogates only in high-low pairs)") from None


def _shape(t: Dict[str, Any], name: str) -> Tuple[Tuple[int, ...], int]:
    """An input's declared shape and element count, checked before anything is made from
    them."""
    shape = t.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise BadRequest(f"input '{name}' has shape {quote(shape)}; expected a list of at most "
                         f"{MAX_RANK} non-negative integers")
    return tuple(shape), check_dims(name, shape)


def bytes_elements(raw: memoryview, count: int, name: str) -> np.ndarray:
    """BYTES binary data: ``count`` elements, each a uint32 length and its bytes.  The caller
    has checked that ``raw`` holds ``count`` lengths, so what is allocated here is bounded by
    the body."""
    out = np.empty(count, dtype=object)
    pos, end = 0, len(raw)
    for i in range(count):  # one element at a time: each is its own bytes object anyway
        if pos + LENGTH_PREFIX > end:
            raise BadRequest(f"input '{name}' binary data ends after {i} of {count} elements")
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + LENGTH_PREFIX + n > end:
            raise BadRequest(f"input '{name}' element {i} of {n} bytes runs past its data")
        out[i] = bytes(raw[pos + LENGTH_PREFIX:pos + LENGTH_PREFIX + n])
        pos += LENGTH_PREFIX + n
    if pos != end:
        raise BadRequest(f"input '{name}' has {end - pos} bytes after its {count} elements")
    return out


def _param_bools(doc: Dict[str, Any]) -> int:
    """The true/false values a request holds outside tensor data: its parameters', and each
    input's and output's."""
    holders = [doc]
    for key in ("inputs", "outputs"):
        tensors = doc.get(key)
        if isinstance(tensors, list):
            holders += [t for t in tensors if isinstance(t, dict)]
    return sum(sum(isinstance(v, bool) for v in h["parameters"].values()) for h in holders
               if isinstance(h.get("parameters"), dict))


def _input(t: Dict[str, Any], raw: memoryview, pos: int, sig_spec: TensorSpec,
           bools: Callable[[], bool]) -> Tuple[np.ndarray, int, int]:
    """(array, dtype code, next binary offset) of one request input."""
    name = t["name"]
    datatype = t.get("datatype")
    dt = BY_V2.get(datatype) if isinstance(datatype, str) else None  # a list: unhashable
    if dt is None:
        raise BadRequest(f"input '{name}' has datatype {quote(datatype)}; expected one of "
                         f"{V2_NAMES}")
    shape, count = _shape(t, name)
    size = _params(t, f"input '{name}' \"parameters\"").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input '{name}' binary_data_size {quote(size)} is no byte count; "
                             "expected a non-negative integer")
        if pos + size > len(raw):
            raise BadRequest(f"input '{name}' binary_data_size {quote(size)} runs past the body "
                             f"({len(raw) - pos} bytes left)")
        chunk = raw[pos:pos + size]
        if dt.numpy == "object":
            if count > size // LENGTH_PREFIX:  # before allocating anything for them
                raise BadRequest(f"input '{name}' has {size} bytes of binary data; shape "
                                 f"{list(shape)} of BYTES needs at least {count * LENGTH_PREFIX} "
                                 f"(a {LENGTH_PREFIX}-byte length per element)")
            check_strings(name, count)
            arr = bytes_elements(chunk, count, name)
        else:
            item = np.dtype(dt.numpy).newbyteorder("<")
            if size != count * item.itemsize:
                raise BadRequest(f"input '{name}' has {size} bytes of binary data; shape "
                                 f"{list(shape)} of {dt.v2} needs {count * item.itemsize}")
            arr = (np.frombuffer(chunk, np.uint8) != 0 if dt.numpy == "bool"
                   else np.frombuffer(chunk, item).astype(dt.numpy))
        return arr.reshape(shape), dt.code, pos + size
    if "data" not in t:
        raise BadRequest(f"input '{name}' has neither \"data\" nor binary_data_size")
    arr = to_array(t["data"], sig_spec._replace(dtype=dt.code), name, bools)
    if arr.size != count:
        raise BadRequest(f"input '{name}' has {arr.size} values; shape {list(shape)} needs {count}")
    return arr.reshape(shape), dt.code, pos


class V2:
    """The ``Codec`` of ``POST /v2/models/<name>[/versions/<v>]/infer``."""

    name = "v2"

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        n = headers.get(HEADER)
        if n is not None:
            k = header_length(n, len(body))
            head, raw = body[:k], memoryview(body)[k:]
        else:
            head, raw = body, memoryview(b"")
        doc = _dict(loads(head, 'an inference request {"inputs": [...]}', jsonfast.V2),
                    "the request")
        params = _params(doc, '"parameters"')
        sig_name = params.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise BadRequest('"parameters" "signature_name" must be a string')
        req_id = doc.get("id")
        for value, what in ((req_id, '"id"'), (call.model, "the model name"),
                            (call.version, "the model version")):
            _echoable(value, what)
        sig = model.signature(sig_name)
        inputs = doc.get("inputs")
        if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_TENSORS:
            raise BadRequest(f'"inputs" must be a list of 1 to {MAX_TENSORS} tensors')
        given: Dict[str, Given] = {}
        pos = 0
        bools = once(lambda: bool_words(head) > _param_bools(doc))  # more than parameters hold
        for t in inputs:
            t = _dict(t, "each input")
            if not isinstance(t.get("name"), str):
                raise BadRequest('each input needs a "name" string')
            check_names([t["name"]], sig, complete=False)
            arr, code, pos = _input(t, raw, pos, sig.inputs[t["name"]], bools)
            given[t["name"]] = Given(code, arr)
        if pos != len(raw):
            raise BadRequest(f"{len(raw) - pos} bytes of binary data belong to no input")
        wanted = doc.get("outputs")
        wanted = [] if wanted is None else wanted
        if not isinstance(wanted, list) or len(wanted) > MAX_TENSORS:
            raise BadRequest('"outputs" must be a list of {"name": ...}')
        binary_all = params.get("binary_data_output") is True
        binary: Dict[str, bool] = {}
        for o in wanted:
            o = _dict(o, "each output")
            if not isinstance(o.get("name"), str):
                raise BadRequest('each output needs a "name" string')
            op = _params(o, f"output {quote(o['name'])} \"parameters\"")
            if "classification" in op:
                raise BadRequest("the classification extension is not supported; ask for the "
                                 "output tensor itself")
            binary[o["name"]] = op.get("binary_data", binary_all) is True
        names = output_names([o["name"] for o in wanted], sig, "output")
        feeds = feeds_for_signature(given, sig)
        form = {k: binary.get(k, binary_all) for k in names}
        return Decoded(sig, feeds, names, (form, req_id))

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        binary, req_id = decoded.form
        entries: List[Dict[str, Any]] = []
        blobs: List[bytes] = []
        floats: List[np.ndarray] = []
        for k in decoded.outputs:
            a = np.asarray(outputs[k])
            dt = dtype_for_numpy(a)
            entry: Dict[str, Any] = {"name": k, "datatype": dt.v2, "shape": list(a.shape)}
            flat = a.reshape(-1)
            if binary.get(k):
                blob = binary_data(flat, dt.numpy)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            elif dt.numpy == "object":
                entry["data"] = _texts(flat, k)
            else:
                entry["data"] = np.ascontiguousarray(flat)
                if flat.dtype.kind == "f":
                    floats.append(flat)
            entries.append(entry)
        reply: Dict[str, Any] = {"model_name": call.model, "model_version": call.version or "1"}
        if isinstance(req_id, str):
            reply["id"] = req_id
        reply["outputs"] = entries
        head = dumps(reply, floats)
        if not blobs:
            return head, {"Content-Type": "application/json"}
        return head + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                        "Inference-Header-Content-Length": str(len(head))}


def binary_data(flat: np.ndarray, numpy: str) -> bytes:
    if numpy != "object":
        return np.ascontiguousarray(flat, dtype=np.dtype(numpy).newbyteorder("<")).tobytes()
    parts = []
    for v in flat:  # BYTES: each element's length, then the element
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts += [struct.pack("<I", len(b)), b]
    return b"".join(parts)


def _texts(flat: np.ndarray, name: str) -> List[str]:
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    except UnicodeDecodeError:
        raise BadRequest(f"output '{name}' holds bytes that are not UTF-8, which JSON cannot "
                         'carry; ask for it with "parameters": {"binary_data": true}') from None


__all__ = ["HEADER", "LENGTH_PREFIX", "MAX_TENSORS", "V2", "binary_data", "bytes_elements", "header_length"]
