"""Wire bytes <-> numpy for the PAI-EAS TensorFlow protocol (``proto/predict.proto``).

The protobuf is decoded and encoded by hand so that the request path depends on no protobuf
runtime version: every processor (TensorFlow 1.12 .. 2.x) pins its own protobuf, and this
module runs on all of them.  Numeric payloads never go through per-element Python loops:
packed fixed-width fields go straight into ``np.frombuffer``; varint fields are split and
assembled with vectorised numpy; unpacked repeated fields are found as runs of equal tags and
decoded the same way.  This module imports no TensorFlow.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BadRequest, ModelError

Buffer = Union[bytes, bytearray, memoryview]

# --- the one dtype table ---------------------------------------------------------------------

# ArrayProto field numbers.
F_DTYPE, F_SHAPE, F_FLOAT, F_DOUBLE, F_INT, F_STRING, F_INT64, F_BOOL = 1, 2, 3, 4, 5, 6, 7, 8
FIELD_NAMES = {
    F_FLOAT: "float_val",
    F_DOUBLE: "double_val",
    F_INT: "int_val",
    F_STRING: "string_val",
    F_INT64: "int64_val",
    F_BOOL: "bool_val",
}

# ArrayDataType (same numbering as TensorFlow's DataType for 1..21).
DTYPE_NAMES = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8",
    5: "DT_INT16", 6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64",
    10: "DT_BOOL", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16",
    15: "DT_QINT16", 16: "DT_QUINT16", 17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF",
    20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64",
}


class DType(NamedTuple):
    code: int
    name: str
    numpy: str  # numpy dtype string of the tensor
    field: int  # ArrayProto field carrying the values


DTYPES: Dict[int, DType] = {
    d.code: d
    for d in (
        DType(1, "DT_FLOAT", "float32", F_FLOAT),
        DType(2, "DT_DOUBLE", "float64", F_DOUBLE),
        DType(3, "DT_INT32", "int32", F_INT),
        DType(4, "DT_UINT8", "uint8", F_INT),
        DType(5, "DT_INT16", "int16", F_INT),
        DType(6, "DT_INT8", "int8", F_INT),
        DType(7, "DT_STRING", "object", F_STRING),
        DType(9, "DT_INT64", "int64", F_INT64),
        DType(10, "DT_BOOL", "bool", F_BOOL),
        DType(17, "DT_UINT16", "uint16", F_INT),
        DType(19, "DT_HALF", "float16", F_INT),  # 16-bit patterns in int_val, as TensorProto
    )
}
_BY_NUMPY = {np.dtype(d.numpy).str: d for d in DTYPES.values() if d.numpy != "object"}
SUPPORTED_NAMES = ", ".join(d.name for d in DTYPES.values())
MAX_RANK = 32
MAX_DIM = 1 << 40  # no tensor that fits in a request body has a larger dimension


def dtype_name(code: int) -> str:
    return DTYPE_NAMES.get(code, f"enum value {code}")


def dtype_for_numpy(array: np.ndarray) -> DType:
    """The wire dtype of a numpy array (strings/bytes/objects -> DT_STRING)."""
    if array.dtype.kind in "OSU":
        return DTYPES[7]
    found = _BY_NUMPY.get(array.dtype.str) or _BY_NUMPY.get(array.dtype.newbyteorder("=").str)
    if found is None:
        raise ModelError(
            f"output dtype {array.dtype} cannot be carried by the EAS protocol; "
            f"expected one of {SUPPORTED_NAMES}"
        )
    return found


# --- signatures and their JSON ----------------------------------------------------------------


class TensorSpec(NamedTuple):
    name: str  # the alias clients use
    dtype: int  # ArrayDataType / TF DataType code
    shape: Optional[Tuple[int, ...]]  # None: unknown rank; -1: unknown dimension
    tensor: str = ""  # graph tensor name behind the alias


class Signature(NamedTuple):
    name: str
    inputs: Dict[str, TensorSpec]
    outputs: Dict[str, TensorSpec]
    method: str = ""


def signature_json(sig: Signature) -> Dict[str, Any]:
    """The structure EAS returns for an empty request."""

    def specs(d: Dict[str, TensorSpec]) -> List[Dict[str, Any]]:
        return [
            {
                "name": s.name,
                "shape": list(s.shape) if s.shape is not None else [],
                "type": dtype_name(s.dtype),
            }
            for s in sorted(d.values(), key=lambda s: s.name)
        ]

    return {"inputs": specs(sig.inputs), "outputs": specs(sig.outputs), "signature_name": sig.name}


def signature_json_bytes(sig: Signature) -> bytes:
    return json.dumps(signature_json(sig), indent=1).encode() + b"\n"


# --- low-level wire reading -----------------------------------------------------------------

_EMPTY_U64 = np.zeros(0, dtype=np.uint64)


class _Malformed(BadRequest):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"malformed protobuf body: {what}; expected a serialized PredictRequest "
            "(proto/predict.proto)"
        )


def _read_varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    if pos < end and buf[pos] < 0x80:  # tags and short lengths: the common case
        return buf[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _read_key(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    """A field's key (tag): as protobuf, a varint of at most 5 bytes and 32 bits, with a field
    number above 0."""
    if pos < end and 8 <= buf[pos] < 0x80:  # one byte, fields 1..15: the common case
        return buf[pos], pos + 1
    key, after = _read_varint(buf, pos, end)
    if key >> 3 == 0:
        raise _Malformed("field number 0")
    if key > 0xFFFFFFFF or after - pos > 5:
        raise _Malformed("field key over 32 bits or 5 bytes")
    return key, after


def decode_varints(data: Buffer, *, allow_partial: bool = False) -> Tuple[np.ndarray, int]:
    """Split and assemble a run of varints without a Python loop per value.

    Returns ``(values as uint64, bytes consumed)``.  With ``allow_partial`` decoding stops
    before the first incomplete or overlong varint instead of raising.
    """
    if len(data) <= _SMALL:
        return _decode_varints_small(data, allow_partial=allow_partial)
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    used = int(ends[-1]) + 1 if ends.size else 0
    if used != b.size and not allow_partial:
        raise _Malformed("truncated varint")
    if ends.size == 0:
        return _EMPTY_U64, 0
    b = b[:used]
    if ends.size == used:  # every value fits in one byte
        return b.astype(np.uint64), used
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 10:
        if not allow_partial:
            raise _Malformed("varint longer than 10 bytes")
        k = int(np.argmax(lengths > 10))  # keep only what precedes the bad varint
        if k == 0:
            return _EMPTY_U64, 0
        ends, starts, lengths = ends[:k], starts[:k], lengths[:k]
        used = int(ends[-1]) + 1
        b = b[:used]
    shifts = (np.arange(used, dtype=np.int64) - np.repeat(starts, lengths)) * 7
    parts = (b & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts), used


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]
_SMALL = 24  # below this many bytes a plain loop beats numpy's per-call overhead (shapes, scalars)


def _decode_varints_small(data: Buffer, *, allow_partial: bool) -> Tuple[np.ndarray, int]:
    out: List[int] = []
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    pos, end, used = 0, len(mv), 0
    while pos < end:
        try:
            v, pos = _read_varint(mv, pos, end)
        except BadRequest:
            if allow_partial:  # keep what precedes the truncated or overlong varint
                break
            raise
        out.append(v)
        used = pos
    return np.array(out, dtype=np.uint64), used


def encode_varints(values: np.ndarray) -> bytes:
    """Varint-encode integers (negative ones as 10-byte two's complement), vectorised."""
    u = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    if u.size == 0:
        return b""
    if u.size <= 4:
        return b"".join(_varint_bytes(int(v)) for v in u.tolist())
    if bool((u < 0x80).all()):
        return u.astype(np.uint8).tobytes()
    nbytes = np.ones(u.shape, dtype=np.int64)
    for k in range(1, 10):
        nbytes += u >= np.uint64(1 << (7 * k))
    groups = np.empty((u.size, 10), dtype=np.uint8)
    for k in range(10):
        cont = (nbytes > k + 1).astype(np.uint8) << np.uint8(7)
        groups[:, k] = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8) | cont
    keep = np.arange(10) < nbytes[:, None]
    return groups[keep].tobytes()


def _varint_bytes(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    n &= 0xFFFFFFFFFFFFFFFF
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _skip(buf: memoryview, pos: int, end: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(buf, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = _read_varint(buf, pos, end)
        pos += n
    else:
        raise _Malformed(f"unsupported wire type {wire}")
    if pos > end:
        raise _Malformed("field runs past the end of its message")
    return pos


def iter_fields(data: Buffer) -> Iterator[Tuple[int, int, Union[int, memoryview]]]:
    """(field, wire type, value) of each field of a message: ints for varint/fixed fields,
    a memoryview for length-delimited ones.  For cold paths (warm-up files), not traffic."""
    buf = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_key(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos, end)
            yield field, wire, value
        elif wire == 2:
            n, pos = _read_varint(buf, pos, end)
            if pos + n > end:
                raise _Malformed("field runs past the end of its message")
            yield field, wire, buf[pos:pos + n]
            pos += n
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Malformed("field runs past the end of its message")
            yield field, wire, int.from_bytes(bytes(buf[pos:pos + width]), "little")
            pos += width
        else:
            raise _Malformed(f"unsupported wire type {wire}")


# --- ArrayProto ------------------------------------------------------------------------------

_FIXED = {F_FLOAT: (5, 4, "<f4"), F_DOUBLE: (1, 8, "<f8")}  # field -> (wire type, width, dtype)
_VARINT_FIELDS = (F_INT, F_INT64, F_BOOL)


class WireArray:
    """An ArrayProto as it came off the wire: dtype code, dims, and each value field."""

    __slots__ = ("_chunks", "dims", "dtype", "strings")

    def __init__(self) -> None:
        self.dtype = 0
        self.dims: List[int] = []
        self.strings: List[bytes] = []
        # field -> list of numpy chunks (floats/doubles) or varint uint64 chunks
        self._chunks: Dict[int, List[np.ndarray]] = {}

    def values(self, field: int) -> np.ndarray:
        chunks = self._chunks.get(field)
        if not chunks:
            return _EMPTY_U64 if field in _VARINT_FIELDS else np.zeros(0, _FIXED[field][2])
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def count(self, field: int) -> int:
        if field == F_STRING:
            return len(self.strings)
        chunks = self._chunks.get(field)
        if not chunks:
            return 0
        return int(chunks[0].size) if len(chunks) == 1 else sum(c.size for c in chunks)

    def fields_present(self) -> List[int]:
        present = [f for f, c in self._chunks.items() if any(x.size for x in c)]
        if self.strings:
            present.append(F_STRING)
        return sorted(present)

    def _add(self, field: int, chunk: np.ndarray) -> None:
        self._chunks.setdefault(field, []).append(chunk)

    # parsing ---------------------------------------------------------------------------------

    def merge_from(self, buf: memoryview, pos: int, end: int) -> None:
        while pos < end:
            key, pos = _read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field in _FIXED:
                fwire, width, dt = _FIXED[field]
                if wire == 2:
                    n, pos = _read_varint(buf, pos, end)
                    if pos + n > end or n % width:
                        raise _Malformed(f"packed {FIELD_NAMES[field]} of {n} bytes")
                    self._add(field, np.frombuffer(buf, dt, n // width, pos))
                    pos += n
                    continue
                if wire == fwire:
                    pos = self._fixed_run(buf, pos, end, key, width, dt, field)
                    continue
            elif field in _VARINT_FIELDS:
                if wire == 2:
                    n, pos = _read_varint(buf, pos, end)
                    if pos + n > end:
                        raise _Malformed(f"packed {FIELD_NAMES[field]} runs past its message")
                    self._add(field, decode_varints(buf[pos : pos + n])[0])
                    pos += n
                    continue
                if wire == 0:
                    pos = self._varint_run(buf, pos, end, key, field)
                    continue
            elif field == F_STRING and wire == 2:
                n, pos = _read_varint(buf, pos, end)
                if pos + n > end:
                    raise _Malformed("string_val runs past its message")
                self.strings.append(bytes(buf[pos : pos + n]))
                pos += n
                continue
            elif field == F_DTYPE and wire == 0:
                v, pos = _read_varint(buf, pos, end)
                self.dtype = v - (1 << 64) if v >> 63 else v  # enums are int32 on the wire
                if not -(1 << 31) <= self.dtype < (1 << 31):
                    self.dtype = (self.dtype + (1 << 31)) % (1 << 32) - (1 << 31)
                continue
            elif field == F_SHAPE and wire == 2:
                n, pos = _read_varint(buf, pos, end)
                if pos + n > end:
                    raise _Malformed("array_shape runs past its message")
                self._merge_shape(buf, pos, pos + n)
                pos += n
                continue
            pos = _skip(buf, pos, end, wire)

    def _merge_shape(self, buf: memoryview, pos: int, end: int) -> None:
        while pos < end:
            key, pos = _read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 1 and wire == 2:
                n, pos = _read_varint(buf, pos, end)
                if pos + n > end:
                    raise _Malformed("array_shape.dim runs past its message")
                dims = decode_varints(buf[pos : pos + n])[0].view(np.int64)
                # a rank beyond MAX_RANK is refused later; keep just enough to say so
                self.dims.extend(dims[: MAX_RANK + 1].tolist())
                pos += n
            elif field == 1 and wire == 0:
                v, pos = _read_varint(buf, pos, end)
                self.dims.append(v - (1 << 64) if v >> 63 else v)
            else:
                pos = _skip(buf, pos, end, wire)

    def _fixed_run(
        self, buf: memoryview, pos: int, end: int, key: int, width: int, dt: str, field: int
    ) -> int:
        """Unpacked fixed-width elements: take the whole run of equal tags at once."""
        start = pos - 1
        if key > 0x7F or buf[start] != key:  # non-canonical tag: one element
            if pos + width > end:
                raise _Malformed(f"{FIELD_NAMES[field]} runs past its message")
            self._add(field, np.frombuffer(buf, dt, 1, pos))
            return pos + width
        stride = width + 1
        window = 64
        count = 0
        while True:
            avail = (end - start) // stride
            n = min(avail, window)
            rows = np.frombuffer(buf, np.uint8, n * stride, start).reshape(n, stride)
            ok = rows[:, 0] == key
            good = n if bool(ok.all()) else int(np.argmin(ok))
            count = good
            if good < n or n == avail:
                break
            window *= 4
        if count == 0:
            raise _Malformed(f"{FIELD_NAMES[field]} runs past its message")
        rows = np.frombuffer(buf, np.uint8, count * stride, start).reshape(count, stride)
        self._add(field, np.ascontiguousarray(rows[:, 1:]).view(dt).reshape(count))
        return start + count * stride

    def _varint_run(self, buf: memoryview, pos: int, end: int, key: int, field: int) -> int:
        """Unpacked varint elements: a run of (tag, value) varints decoded in one pass."""
        start = pos - 1
        if key > 0x7F or buf[start] != key:
            v, pos = _read_varint(buf, pos, end)
            self._add(field, np.array([v], dtype=np.uint64))
            return pos
        window = 256
        while True:
            stop = min(end, start + window)
            vals, used = decode_varints(buf[start:stop], allow_partial=True)
            pairs = vals.size // 2
            tags = vals[0 : 2 * pairs : 2]
            ok = tags == key
            good = pairs if bool(ok.all()) else int(np.argmin(ok))
            # stop when the run ended, the message ended, or decoding hit a non-varint
            if good < pairs or stop == end or used < stop - start - 10:
                break
            window *= 4
        if good == 0:
            # the value after the tag is truncated or the run is a single odd element
            v, pos = _read_varint(buf, pos, end)
            self._add(field, np.array([v], dtype=np.uint64))
            return pos
        self._add(field, vals[1 : 2 * good : 2])
        # bytes consumed by the good pairs: re-split only that prefix's boundaries
        ends = np.flatnonzero(np.frombuffer(buf[start:stop], np.uint8) < 0x80)
        return start + int(ends[2 * good - 1]) + 1

    # conversion ------------------------------------------------------------------------------

    def to_numpy(self, name: str) -> np.ndarray:
        """Validate dtype, shape and value count, then build the array (no per-element loop)."""
        dt = DTYPES.get(self.dtype)
        if dt is None:
            if self.dtype in DTYPE_NAMES:
                raise BadRequest(
                    f"input '{name}' has dtype {dtype_name(self.dtype)}, which is not supported; "
                    f"expected one of {SUPPORTED_NAMES}"
                )
            raise BadRequest(
                f"input '{name}' has invalid dtype enum value {self.dtype}; "
                f"expected one of {SUPPORTED_NAMES}"
            )
        shape = self.shape(name)
        expected = 1
        for d in shape:
            expected *= d
        got = self.count(dt.field)
        if got != expected:
            raise BadRequest(
                f"input '{name}' has {got} values in {FIELD_NAMES[dt.field]} but shape "
                f"{list(shape)} needs {expected}"
            )
        # values in a field other than the dtype's (the common case, none, is checked cheaply)
        if len(self._chunks) > (dt.field in self._chunks) or (self.strings and dt.field != F_STRING):
            for other in self.fields_present():
                if other != dt.field:
                    raise BadRequest(
                        f"input '{name}' of dtype {dt.name} carries values in {FIELD_NAMES[other]}; "
                        f"expected them in {FIELD_NAMES[dt.field]}"
                    )
        if dt.field == F_STRING:
            arr = np.empty(expected, dtype=object)
            arr[:] = self.strings
            return arr.reshape(shape)
        raw = self.values(dt.field)
        if dt.field in _FIXED:
            arr = raw
        elif dt.code == 19:  # half: 16-bit patterns
            arr = raw.astype(np.uint16).view(np.float16)
        elif dt.code == 10:
            arr = raw != 0
        else:
            arr = raw.view(np.int64).astype(dt.numpy)
        return arr.reshape(shape)

    def shape(self, name: str) -> Tuple[int, ...]:
        if len(self.dims) > MAX_RANK:
            raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
        for d in self.dims:
            if d < 0 or d > MAX_DIM:
                raise BadRequest(
                    f"input '{name}' has dimension {d} in shape {self.dims}; "
                    f"expected sizes from 0 to {MAX_DIM}"
                )
        return tuple(self.dims)


class WireRequest(NamedTuple):
    signature_name: str
    inputs: Dict[str, WireArray]
    output_filter: List[str]


def _utf8(buf: memoryview, pos: int, end: int, what: str) -> str:
    try:
        return bytes(buf[pos:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not valid UTF-8") from None


def _len_field(buf: memoryview, pos: int, end: int, what: str) -> Tuple[int, int]:
    n, pos = _read_varint(buf, pos, end)
    if pos + n > end:
        raise _Malformed(f"{what} runs past the end of the body")
    return pos, pos + n


def decode_request(body: Buffer) -> WireRequest:
    """Parse a serialized PredictRequest (protobuf semantics: last scalar wins, maps replace)."""
    buf = memoryview(body).cast("B") if not isinstance(body, memoryview) else body.cast("B")
    end = len(buf)
    pos = 0
    signature = ""
    inputs: Dict[str, WireArray] = {}
    output_filter: List[str] = []
    while pos < end:
        key, pos = _read_key(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 2 and field in (1, 2, 3):
            start, stop = _len_field(buf, pos, end, "a field")
            if field == 1:
                signature = _utf8(buf, start, stop, "signature_name")
            elif field == 3:
                output_filter.append(_utf8(buf, start, stop, "output_filter"))
            else:
                name, arr = _decode_entry(buf, start, stop)
                inputs[name] = arr
            pos = stop
        else:
            pos = _skip(buf, pos, end, wire)
    return WireRequest(signature, inputs, output_filter)


def _decode_entry(buf: memoryview, pos: int, end: int) -> Tuple[str, WireArray]:
    name = ""
    arr = WireArray()
    while pos < end:
        key, pos = _read_key(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 2 and field in (1, 2):
            start, stop = _len_field(buf, pos, end, "an inputs entry")
            if field == 1:
                name = _utf8(buf, start, stop, "an input name")
            else:
                arr.merge_from(buf, start, stop)
            pos = stop
        else:
            pos = _skip(buf, pos, end, wire)
    return name, arr


# --- encoding --------------------------------------------------------------------------------


def _tagged(field: int, payload: bytes) -> bytes:
    return _varint_bytes(field << 3 | 2) + _varint_bytes(len(payload)) + payload


def encode_array(array: np.ndarray) -> bytes:
    """One ArrayProto: dtype, shape, and the values packed in the field the dtype uses."""
    dt = dtype_for_numpy(array)
    dims = b"".join(_varint_bytes(d) for d in array.shape)
    out = [bytes((F_DTYPE << 3, dt.code)), _tagged(F_SHAPE, _tagged(1, dims) if dims else b"")]
    flat = array.reshape(-1)
    if dt.field == F_STRING:
        out.extend(_tagged(F_STRING, _as_bytes(v)) for v in flat)
    elif flat.size:
        if dt.field in _FIXED:
            payload = np.ascontiguousarray(flat, dtype=_FIXED[dt.field][2]).tobytes()
        elif dt.code == 10:
            payload = flat.astype(np.uint8).tobytes()
        elif dt.code == 19:
            payload = encode_varints(flat.astype(np.float16).view(np.uint16))
        else:
            payload = encode_varints(flat)
        out.append(_tagged(dt.field, payload))
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
        entry = _tagged(1, name.encode("utf-8")) + _tagged(2, encode_array(np.asarray(outputs[name])))
        parts.append(_tagged(1, entry))
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
        parts.append(_tagged(1, signature_name.encode("utf-8")))
    for name in sorted(inputs):
        entry = _tagged(1, name.encode("utf-8")) + _tagged(2, encode_array(np.asarray(inputs[name])))
        parts.append(_tagged(2, entry))
    parts.extend(_tagged(3, f.encode("utf-8")) for f in output_filter)
    return b"".join(parts)


def decode_response(body: Buffer) -> Dict[str, np.ndarray]:
    """Parse a PredictResponse into arrays (clients, warm-up checks and tests)."""
    buf = memoryview(body).cast("B") if not isinstance(body, memoryview) else body.cast("B")
    out: Dict[str, np.ndarray] = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_key(buf, pos, end)
        if key == (1 << 3 | 2):
            start, stop = _len_field(buf, pos, end, "an outputs entry")
            name, arr = _decode_entry(buf, start, stop)
            out[name] = arr.to_numpy(name)
            pos = stop
        else:
            pos = _skip(buf, pos, end, key & 7)
    return out


# --- matching a request to a signature --------------------------------------------------------


def feeds_for_signature(req: WireRequest, sig: Signature) -> Dict[str, np.ndarray]:
    """Check names, dtypes and shapes against the signature and build the input arrays."""
    if req.inputs.keys() != sig.inputs.keys():
        unknown = sorted(set(req.inputs) - set(sig.inputs))
        if unknown:
            raise BadRequest(
                f"unknown input {', '.join(repr(u) for u in unknown)} for signature '{sig.name}'; "
                f"expected {_names(sig.inputs)}"
            )
        missing = sorted(set(sig.inputs) - set(req.inputs))
        raise BadRequest(
            f"missing input {', '.join(repr(m) for m in missing)} for signature '{sig.name}'; "
            f"expected {_names(sig.inputs)}"
        )
    feeds = {}
    for name, wire in req.inputs.items():
        spec = sig.inputs[name]
        if wire.dtype != spec.dtype:
            raise BadRequest(
                f"input '{name}' has dtype {dtype_name(wire.dtype)}; "
                f"signature '{sig.name}' expects {dtype_name(spec.dtype)}"
            )
        arr = wire.to_numpy(name)
        check_shape(name, arr.shape, spec.shape)
        feeds[name] = arr
    return feeds


def check_shape(name: str, got: Tuple[int, ...], want: Optional[Tuple[int, ...]]) -> None:
    if want is None:
        return
    if len(got) != len(want) or any(w >= 0 and g != w for g, w in zip(got, want)):
        raise BadRequest(
            f"input '{name}' has shape {list(got)}; expected {list(want)} (-1: any size)"
        )


def output_names(req: WireRequest, sig: Signature) -> List[str]:
    if not req.output_filter:
        return sorted(sig.outputs)
    unknown = [f for f in req.output_filter if f not in sig.outputs]
    if unknown:
        raise BadRequest(
            f"unknown output_filter {', '.join(repr(u) for u in unknown)} for signature "
            f"'{sig.name}'; expected {_names(sig.outputs)}"
        )
    return sorted(set(req.output_filter))


def _names(d: Dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in sorted(d)) or "none"
