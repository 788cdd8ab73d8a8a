"""The EAS ``ArrayProto`` off the wire: validated in one pass, decoded into one numpy array in
another, with no per-element Python loops for any layout (packed, unpacked runs, hostile
interleavings)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadRequest
from .dtypes import (
    DTYPE_NAMES,
    DTYPES,
    F_BOOL,
    F_DOUBLE,
    F_DTYPE,
    F_FLOAT,
    F_INT,
    F_INT64,
    F_SHAPE,
    F_STRING,
    FIELD_NAMES,
    MAX_ELEMENTS,
    MAX_RANK,
    SUPPORTED_NAMES,
    check_dims,
    dtype_name,
)
from .wire import (
    SMALL,
    Malformed,
    assemble,
    count_varints,
    decode_varints,
    fixed_run,
    read_key,
    read_varint,
    single,
    skip_field,
    small_varints,
    varint_blocks,
    varint_run,
)

FIXED = {F_FLOAT: (5, 4, "<f4"), F_DOUBLE: (1, 8, "<f8")}  # field -> (wire type, width, dtype)
_VARINT_FIELDS = (F_INT, F_INT64, F_BOOL)
MAX_INPUTS = 4096  # distinct input names in one request
MAX_PARTS = 64  # occurrences of one input's ArrayProto that protobuf would merge
MAX_OUTPUT_FILTER = 4096

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
            raise Malformed(f"one input's ArrayProto split into more than {MAX_PARTS} parts")
        self._parts.append((start, end))

    def count(self, field: int) -> int:
        return self._counts.get(field, 0)

    def fields_present(self) -> List[int]:
        return sorted(f for f, n in self._counts.items() if n)

    # pass 1 ----------------------------------------------------------------------------------

    def scan(self, max_strings: Optional[int] = None) -> None:
        """Pass 1.  ``max_strings``: stop once string_val holds more elements than this (then
        counted as ``max_strings + 1``), before reading the rest: a request's limit."""
        buf = self._buf
        room = (1 << 62) if max_strings is None else max_strings  # strings still allowed
        for pos, end in self._parts:
            while pos < end:
                key, pos = read_key(buf, pos, end)
                field, wire = key >> 3, key & 7
                at = pos
                n = -1
                if field in FIXED:
                    fwire, width, _ = FIXED[field]
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if pos + size > end or size % width:
                            raise Malformed(f"packed {FIELD_NAMES[field]} of {size} bytes")
                        n, at, pos = size // width, pos, pos + size
                    elif wire == fwire:
                        if single(buf, pos, end, key, pos + width):
                            if pos + width > end:
                                raise Malformed(f"{FIELD_NAMES[field]} runs past its message")
                            n, pos = 1, pos + width
                        else:
                            n, pos = fixed_run(buf, pos, end, key, width)
                elif field in _VARINT_FIELDS:
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if pos + size > end:
                            raise Malformed(f"packed {FIELD_NAMES[field]} runs past its message")
                        n, at, pos = count_varints(buf, pos, pos + size), pos, pos + size
                    elif wire == 0:
                        after = read_varint(buf, pos, end)[1]
                        if single(buf, pos, end, key, after):
                            n, pos = 1, after
                        else:
                            n, pos = varint_run(buf, pos, end, key)
                elif field == F_STRING and wire == 2:
                    size, pos = read_varint(buf, pos, end)
                    if pos + size > end:
                        raise Malformed("string_val runs past its message")
                    n, pos = 1, pos + size
                    if room == 0:
                        self._counts[F_STRING] = self._counts.get(F_STRING, 0) + 1
                        return
                    room -= 1
                elif field == F_DTYPE and wire == 0:
                    v, pos = read_varint(buf, pos, end)
                    self.dtype = (v + (1 << 31)) % (1 << 32) - (1 << 31)  # enums are int32
                    continue
                elif field == F_SHAPE and wire == 2:
                    size, pos = read_varint(buf, pos, end)
                    if pos + size > end:
                        raise Malformed("array_shape runs past its message")
                    self._scan_shape(pos, pos + size)
                    pos += size
                    continue
                if n < 0:
                    pos = skip_field(buf, pos, end, wire)
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
            key, pos = read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 1 and wire == 2:
                size, pos = read_varint(buf, pos, end)
                if pos + size > end:
                    raise Malformed("array_shape.dim runs past its message")
                if size <= SMALL:  # every real shape: a few dims, read in Python
                    dims = [v - (1 << 64) if v >> 63 else v for v in small_varints(buf, pos, pos + size)]
                    n = len(dims)
                else:
                    n = count_varints(buf, pos, pos + size)
                if self._rank_over or len(self.dims) + n > MAX_RANK:
                    self._rank_over = True  # refused in shape(); nothing more is kept
                elif size <= SMALL:
                    self.dims.extend(dims)
                else:
                    self.dims.extend(decode_varints(buf[pos : pos + size])[0].view(np.int64).tolist())
                pos += size
            elif field == 1 and wire == 0:
                v, pos = read_varint(buf, pos, end)
                if len(self.dims) >= MAX_RANK:
                    self._rank_over = True
                else:
                    self.dims.append(v - (1 << 64) if v >> 63 else v)
            else:
                pos = skip_field(buf, pos, end, wire)

    # pass 2 ----------------------------------------------------------------------------------

    def _fill(self, field: int, out: np.ndarray) -> None:
        """Decode every value of ``field`` into ``out`` (sized by ``scan``'s count)."""
        buf = self._buf
        i = 0
        fixed = FIXED.get(field)
        for pos, end in self._parts:
            while pos < end:
                key, pos = read_key(buf, pos, end)
                f, wire = key >> 3, key & 7
                if f != field:
                    pos = skip_field(buf, pos, end, wire)
                elif fixed is not None and wire in (2, fixed[0]):
                    width, dt = fixed[1], fixed[2]
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        n = size // width
                        out[i : i + n] = np.frombuffer(buf, dt, n, pos)
                        pos += size
                    elif single(buf, pos, end, key, pos + width):
                        n = 1
                        out[i] = np.frombuffer(buf, dt, 1, pos)[0]
                        pos += width
                    else:
                        n, stop = fixed_run(buf, pos, end, key, width)
                        out[i : i + n] = np.ndarray((n,), dt, buf, pos, (width + 1,))
                        pos = stop
                    i += n
                elif field in _VARINT_FIELDS and wire in (0, 2):
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if size <= SMALL:
                            vals = np.array(small_varints(buf, pos, pos + size), np.uint64)
                            out[i : i + vals.size] = _from_varint(vals, out.dtype)
                            i += vals.size
                        else:
                            for b, ends in varint_blocks(buf, pos, pos + size):
                                vals = assemble(b, ends)
                                out[i : i + vals.size] = _from_varint(vals, out.dtype)
                                i += vals.size
                        pos += size
                    elif single(buf, pos, end, key, read_varint(buf, pos, end)[1]):
                        v, pos = read_varint(buf, pos, end)
                        out[i] = _scalar_from_varint(v, out.dtype)
                        i += 1
                    else:
                        n, stop = varint_run(buf, pos, end, key)
                        odd = 0  # values are every other varint, after each tag
                        for b, ends in varint_blocks(buf, pos - 1, stop):
                            vals = assemble(b, ends)[1 - odd :: 2]
                            odd = (odd + ends.size) % 2
                            out[i : i + vals.size] = _from_varint(vals, out.dtype)
                            i += vals.size
                        pos = stop
                elif field == F_STRING and wire == 2:
                    size, pos = read_varint(buf, pos, end)
                    out[i] = bytes(buf[pos : pos + size])
                    pos += size
                    i += 1
                else:
                    pos = skip_field(buf, pos, end, wire)

    def values(self, field: int, dtype: Any = None) -> np.ndarray:
        """Every value of ``field`` in wire order: numpy ``dtype`` for varint fields (default
        uint64, the raw varints), the field's own type for fixed-width ones, bytes objects
        for strings."""
        n = self.count(field)
        fixed = FIXED.get(field)
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
        if dt.field in FIXED or dt.field == F_STRING:
            arr = self.values(dt.field)
        else:
            arr = self.values(dt.field, dt.numpy)
        return arr.reshape(shape)

    def shape(self, name: str) -> Tuple[int, ...]:
        if self._rank_over:  # dims past MAX_RANK were not kept: say so as check_dims would
            raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
        check_dims(name, self.dims)
        return tuple(self.dims)


__all__ = ["MAX_ELEMENTS", "MAX_INPUTS", "MAX_OUTPUT_FILTER", "MAX_PARTS", "WireArray"]
