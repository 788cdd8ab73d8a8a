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
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

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


_BLOCK = 1 << 15  # varints are decoded this many bytes at a time: temporaries stay ~1 MiB


def _varint_blocks(buf: Buffer, start: int, end: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Split ``buf[start:end]`` into blocks of whole varints, at most ``_BLOCK`` bytes each:
    ``(bytes as uint8, index of each varint's last byte)``.  Truncated or overlong varints
    (as protobuf: more than 10 bytes) are malformed."""
    pos = start
    while pos < end:
        stop = min(end, pos + _BLOCK)
        b = np.frombuffer(buf, np.uint8, stop - pos, pos)
        ends = np.flatnonzero(b < 0x80)
        if ends.size == 0:
            raise _Malformed("truncated varint" if stop == end else "varint longer than 10 bytes")
        used = int(ends[-1]) + 1
        if stop == end and used != stop - pos:
            raise _Malformed("truncated varint")
        if int(ends[0]) >= 10 or (ends.size > 1 and int((ends[1:] - ends[:-1]).max()) > 10):
            raise _Malformed("varint longer than 10 bytes")
        yield b[:used], ends
        pos += used


def _assemble(b: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The uint64 values of a block of whole varints (``_varint_blocks``)."""
    if ends.size == b.size:  # every value fits in one byte
        return b.astype(np.uint64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    shifts = (np.arange(b.size, dtype=np.int64) - np.repeat(starts, ends - starts + 1)) * 7
    parts = (b & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


_SMALL = 24  # below this many bytes a plain loop beats numpy's per-call overhead (shapes, scalars)


def _small_varints(buf: memoryview, start: int, end: int) -> List[int]:
    """The varints of a short run, in Python (validated as ``_read_varint`` does)."""
    out: List[int] = []
    while start < end:
        v, start = _read_varint(buf, start, end)
        out.append(v)
    return out


def count_varints(buf: memoryview, start: int, end: int) -> int:
    """How many varints ``buf[start:end]`` holds (validating them), without decoding."""
    if end - start <= _SMALL:
        return len(_small_varints(buf, start, end))
    return sum(int(ends.size) for _, ends in _varint_blocks(buf, start, end))


def decode_varints(data: Buffer) -> Tuple[np.ndarray, int]:
    """Split and assemble a run of varints without a Python loop per value.

    Returns ``(values as uint64, bytes consumed)``; truncated or overlong varints are malformed.
    """
    if len(data) <= _SMALL:
        mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        return np.array(_small_varints(mv, 0, len(mv)), dtype=np.uint64), len(data)
    blocks = [_assemble(b, ends) for b, ends in _varint_blocks(data, 0, len(data))]
    if not blocks:
        return _EMPTY_U64, 0
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), len(data)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]



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
_VALUE_FIELDS = (F_FLOAT, F_DOUBLE, F_INT, F_STRING, F_INT64, F_BOOL)
MAX_INPUTS = 4096  # distinct input names in one request
MAX_PARTS = 64  # occurrences of one input's ArrayProto that protobuf would merge
MAX_OUTPUT_FILTER = 4096
MAX_ELEMENTS = 1 << 40  # no tensor that fits in a request body has more (zero dims aside)

# How the values of one field are converted from the uint64 varints on the wire.
_FROM_VARINT: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bool": lambda u: u != 0,
    "float16": lambda u: u.astype(np.uint16).view(np.float16),
    "uint64": lambda u: u,
}


def _from_varint(u: np.ndarray, dtype: np.dtype) -> np.ndarray:
    conv = _FROM_VARINT.get(dtype.name)
    return conv(u) if conv is not None else u.view(np.int64).astype(dtype)


def _scalar_from_varint(v: int, dtype: np.dtype) -> Any:
    """One varint as ``_from_varint`` converts it, in plain Python (lone elements)."""
    if dtype.kind in "iu":
        bits = dtype.itemsize * 8
        v &= (1 << bits) - 1
        return v - (1 << bits) if dtype.kind == "i" and v >> (bits - 1) else v
    return _from_varint(np.array([v], np.uint64), dtype)[0]


def _single(buf: memoryview, pos: int, end: int, key: int, after: int) -> bool:
    """Whether the element whose value starts at ``pos`` stands alone: its tag was not the
    canonical one byte, or the next field has another tag.  Lone elements (an adversary's
    favourite: each followed by an unknown field) are read in Python; only a real run of equal
    tags is worth numpy's per-call cost."""
    return key > 0x7F or buf[pos - 1] != key or after >= end or buf[after] != key


def _fixed_run(buf: memoryview, pos: int, end: int, key: int, width: int) -> Tuple[int, int]:
    """Unpacked fixed-width elements after a one-byte tag at ``pos - 1``: how many follow with
    the same tag, and where the run ends.  Windows grow from small, so a run of one costs
    little and a long run is found in O(its length)."""
    start = pos - 1
    stride = width + 1
    count, window = 0, 16
    while True:
        avail = (end - start) // stride - count
        n = min(avail, window)
        if n <= 0:
            break
        rows = np.frombuffer(buf, np.uint8, n * stride, start + count * stride).reshape(n, stride)
        ok = rows[:, 0] == key
        good = n if bool(ok.all()) else int(np.argmin(ok))
        count += good
        if good < n:
            break
        window = min(window * 4, _BLOCK)
    if count == 0:
        raise _Malformed(f"{FIELD_NAMES[key >> 3]} runs past its message")
    return count, start + count * stride


def _varint_run(buf: memoryview, pos: int, end: int, key: int) -> Tuple[int, int]:
    """Unpacked varint elements after a one-byte tag at ``pos - 1``: how many (tag, value)
    pairs follow with that tag, and where the run ends (values validated)."""
    p = pos - 1
    count, window = 0, 32
    while p < end:
        stop = min(end, p + window)
        b = np.frombuffer(buf, np.uint8, stop - p, p)
        ends = np.flatnonzero(b < 0x80)
        pairs = ends.size // 2
        if pairs == 0:
            break
        tag_at = np.empty(pairs, dtype=np.int64)  # where each pair's tag starts
        tag_at[0] = 0
        tag_at[1:] = ends[1 : 2 * pairs - 1 : 2] + 1
        ok = b[tag_at] == key
        good = pairs if bool(ok.all()) else int(np.argmin(ok))
        if good and int((ends[1 : 2 * good : 2] - ends[0 : 2 * good : 2]).max()) > 10:
            raise _Malformed("varint longer than 10 bytes")
        count += good
        p += int(ends[2 * good - 1]) + 1 if good else 0
        if good < pairs or stop == end:
            break
        window = min(window * 4, _BLOCK)
    if count == 0:  # the value after the tag is truncated or overlong: say which
        return 1, _read_varint(buf, pos, end)[1]
    return count, p


class WireArray:
    """An ArrayProto as it came off the wire.

    Decoding takes two passes over the request's own bytes, and keeps no copy of them:
    ``scan`` (at ``decode_request``) validates every field as protobuf would and counts the
    values of each field, reading dtype and dims; ``to_numpy`` then checks dtype, shape and
    count, allocates the one output array and decodes only the dtype's field into it, in
    bounded blocks.  Cost is linear in the body for every layout (packed, unpacked runs,
    values interleaved with unknown fields) and extra memory is bounded by a small constant
    times the body, plus the output."""

    __slots__ = ("_buf", "_counts", "_parts", "_pieces", "_rank_over", "_view", "dims", "dtype")

    def __init__(self, buf: memoryview) -> None:
        self._buf = buf
        self._parts: List[Tuple[int, int]] = []
        self.dtype = 0
        self.dims: List[int] = []
        self._rank_over = False
        self._counts: Dict[int, int] = {}
        self._pieces: Dict[int, int] = {}
        self._view: Dict[int, int] = {}  # field -> offset of its values when one packed piece

    def add_part(self, start: int, end: int) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise _Malformed(f"one input's ArrayProto split into more than {MAX_PARTS} parts")
        self._parts.append((start, end))

    def count(self, field: int) -> int:
        return self._counts.get(field, 0)

    def fields_present(self) -> List[int]:
        return sorted(f for f, n in self._counts.items() if n)

    # pass 1 ----------------------------------------------------------------------------------

    def scan(self) -> None:
        buf = self._buf
        for pos, end in self._parts:
            while pos < end:
                key, pos = _read_key(buf, pos, end)
                field, wire = key >> 3, key & 7
                at = pos
                n = -1
                if field in _FIXED:
                    fwire, width, _ = _FIXED[field]
                    if wire == 2:
                        size, pos = _read_varint(buf, pos, end)
                        if pos + size > end or size % width:
                            raise _Malformed(f"packed {FIELD_NAMES[field]} of {size} bytes")
                        n, at, pos = size // width, pos, pos + size
                    elif wire == fwire:
                        if _single(buf, pos, end, key, pos + width):
                            if pos + width > end:
                                raise _Malformed(f"{FIELD_NAMES[field]} runs past its message")
                            n, pos = 1, pos + width
                        else:
                            n, pos = _fixed_run(buf, pos, end, key, width)
                elif field in _VARINT_FIELDS:
                    if wire == 2:
                        size, pos = _read_varint(buf, pos, end)
                        if pos + size > end:
                            raise _Malformed(f"packed {FIELD_NAMES[field]} runs past its message")
                        n, at, pos = count_varints(buf, pos, pos + size), pos, pos + size
                    elif wire == 0:
                        after = _read_varint(buf, pos, end)[1]
                        if _single(buf, pos, end, key, after):
                            n, pos = 1, after
                        else:
                            n, pos = _varint_run(buf, pos, end, key)
                elif field == F_STRING and wire == 2:
                    size, pos = _read_varint(buf, pos, end)
                    if pos + size > end:
                        raise _Malformed("string_val runs past its message")
                    n, pos = 1, pos + size
                elif field == F_DTYPE and wire == 0:
                    v, pos = _read_varint(buf, pos, end)
                    self.dtype = (v + (1 << 31)) % (1 << 32) - (1 << 31)  # enums are int32
                    continue
                elif field == F_SHAPE and wire == 2:
                    size, pos = _read_varint(buf, pos, end)
                    if pos + size > end:
                        raise _Malformed("array_shape runs past its message")
                    self._scan_shape(pos, pos + size)
                    pos += size
                    continue
                if n < 0:
                    pos = _skip(buf, pos, end, wire)
                    continue
                if n:
                    pieces = self._pieces.get(field, 0)
                    self._pieces[field] = pieces + 1
                    if pieces == 0 and wire == 2:
                        self._view[field] = at
                    self._counts[field] = self._counts.get(field, 0) + n

    def _scan_shape(self, pos: int, end: int) -> None:
        buf = self._buf
        while pos < end:
            key, pos = _read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 1 and wire == 2:
                size, pos = _read_varint(buf, pos, end)
                if pos + size > end:
                    raise _Malformed("array_shape.dim runs past its message")
                if size <= _SMALL:  # every real shape: a few dims, read in Python
                    dims = [v - (1 << 64) if v >> 63 else v for v in _small_varints(buf, pos, pos + size)]
                    n = len(dims)
                else:
                    n = count_varints(buf, pos, pos + size)
                if self._rank_over or len(self.dims) + n > MAX_RANK:
                    self._rank_over = True  # refused in shape(); nothing more is kept
                elif size <= _SMALL:
                    self.dims.extend(dims)
                else:
                    self.dims.extend(decode_varints(buf[pos : pos + size])[0].view(np.int64).tolist())
                pos += size
            elif field == 1 and wire == 0:
                v, pos = _read_varint(buf, pos, end)
                if len(self.dims) >= MAX_RANK:
                    self._rank_over = True
                else:
                    self.dims.append(v - (1 << 64) if v >> 63 else v)
            else:
                pos = _skip(buf, pos, end, wire)

    # pass 2 ----------------------------------------------------------------------------------

    def _fill(self, field: int, out: np.ndarray) -> None:
        """Decode every value of ``field`` into ``out`` (sized by ``scan``'s count)."""
        buf = self._buf
        i = 0
        fixed = _FIXED.get(field)
        for pos, end in self._parts:
            while pos < end:
                key, pos = _read_key(buf, pos, end)
                f, wire = key >> 3, key & 7
                if f != field:
                    pos = _skip(buf, pos, end, wire)
                elif fixed is not None and wire in (2, fixed[0]):
                    width, dt = fixed[1], fixed[2]
                    if wire == 2:
                        size, pos = _read_varint(buf, pos, end)
                        n = size // width
                        out[i : i + n] = np.frombuffer(buf, dt, n, pos)
                        pos += size
                    elif _single(buf, pos, end, key, pos + width):
                        n = 1
                        out[i] = np.frombuffer(buf, dt, 1, pos)[0]
                        pos += width
                    else:
                        n, stop = _fixed_run(buf, pos, end, key, width)
                        out[i : i + n] = np.ndarray((n,), dt, buf, pos, (width + 1,))
                        pos = stop
                    i += n
                elif field in _VARINT_FIELDS and wire in (0, 2):
                    if wire == 2:
                        size, pos = _read_varint(buf, pos, end)
                        if size <= _SMALL:
                            vals = np.array(_small_varints(buf, pos, pos + size), np.uint64)
                            out[i : i + vals.size] = _from_varint(vals, out.dtype)
                            i += vals.size
                        else:
                            for b, ends in _varint_blocks(buf, pos, pos + size):
                                vals = _assemble(b, ends)
                                out[i : i + vals.size] = _from_varint(vals, out.dtype)
                                i += vals.size
                        pos += size
                    elif _single(buf, pos, end, key, _read_varint(buf, pos, end)[1]):
                        v, pos = _read_varint(buf, pos, end)
                        out[i] = _scalar_from_varint(v, out.dtype)
                        i += 1
                    else:
                        n, stop = _varint_run(buf, pos, end, key)
                        odd = 0  # values are every other varint, after each tag
                        for b, ends in _varint_blocks(buf, pos - 1, stop):
                            vals = _assemble(b, ends)[1 - odd :: 2]
                            odd = (odd + ends.size) % 2
                            out[i : i + vals.size] = _from_varint(vals, out.dtype)
                            i += vals.size
                        pos = stop
                elif field == F_STRING and wire == 2:
                    size, pos = _read_varint(buf, pos, end)
                    out[i] = bytes(buf[pos : pos + size])
                    pos += size
                    i += 1
                else:
                    pos = _skip(buf, pos, end, wire)

    def values(self, field: int, dtype: Any = None) -> np.ndarray:
        """Every value of ``field`` in wire order: numpy ``dtype`` for varint fields (default
        uint64, the raw varints), the field's own type for fixed-width ones, bytes objects
        for strings."""
        n = self.count(field)
        fixed = _FIXED.get(field)
        if fixed is not None:
            at = self._view.get(field)
            if self._pieces.get(field) == 1 and at is not None:  # one packed piece: a view
                return np.frombuffer(self._buf, fixed[2], n, at)
            dt = np.dtype(fixed[2])
        else:
            dt = np.dtype(object if field == F_STRING else (dtype or np.uint64))
        out = np.empty(n, dtype=dt)
        if n:
            self._fill(field, out)
        return out

    @property
    def strings(self) -> List[bytes]:
        return list(self.values(F_STRING))

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
        if len(self._counts) > (dt.field in self._counts):
            for other in self.fields_present():
                if other != dt.field:
                    raise BadRequest(
                        f"input '{name}' of dtype {dt.name} carries values in {FIELD_NAMES[other]}; "
                        f"expected them in {FIELD_NAMES[dt.field]}"
                    )
        if dt.field in _FIXED or dt.field == F_STRING:
            arr = self.values(dt.field)
        else:
            arr = self.values(dt.field, dt.numpy)
        return arr.reshape(shape)

    def shape(self, name: str) -> Tuple[int, ...]:
        if self._rank_over or len(self.dims) > MAX_RANK:
            raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
        size = 1
        for d in self.dims:
            if d < 0 or d > MAX_DIM:
                raise BadRequest(
                    f"input '{name}' has dimension {d} in shape {self.dims}; "
                    f"expected sizes from 0 to {MAX_DIM}"
                )
            size *= max(d, 1)
        if size > MAX_ELEMENTS:  # even with a zero dim: numpy refuses such shapes
            raise BadRequest(
                f"input '{name}' has shape {self.dims}, over {MAX_ELEMENTS} elements; "
                "expected a shape that fits in a request"
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
    """Parse a serialized PredictRequest (protobuf semantics: last scalar wins, maps replace,
    messages merge).  Every input is validated and counted here; values are decoded later by
    ``WireArray.to_numpy``, straight from ``body``."""
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
                if len(output_filter) >= MAX_OUTPUT_FILTER:
                    raise _Malformed(f"more than {MAX_OUTPUT_FILTER} output_filter entries")
                output_filter.append(_utf8(buf, start, stop, "output_filter"))
            else:
                name, arr = _decode_entry(buf, start, stop)
                if name not in inputs and len(inputs) >= MAX_INPUTS:
                    raise _Malformed(f"more than {MAX_INPUTS} inputs")
                inputs[name] = arr
            pos = stop
        else:
            pos = _skip(buf, pos, end, wire)
    for arr in inputs.values():
        arr.scan()
    return WireRequest(signature, inputs, output_filter)


def _decode_entry(buf: memoryview, pos: int, end: int) -> Tuple[str, WireArray]:
    name = ""
    arr = WireArray(buf)
    while pos < end:
        key, pos = _read_key(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 2 and field in (1, 2):
            start, stop = _len_field(buf, pos, end, "an inputs entry")
            if field == 1:
                name = _utf8(buf, start, stop, "an input name")
            else:
                arr.add_part(start, stop)
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
            arr.scan()
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
