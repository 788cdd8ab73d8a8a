"""Array messages off the wire (EAS's ``ArrayProto``, TensorFlow's ``TensorProto``, told apart
by a ``dtypes.Layout``): validated in one pass, decoded into one numpy array in another, with
no per-element Python loops for any layout (packed, unpacked runs, hostile interleavings)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadRequest
from .array_parts import Dims, from_varint, from_varints
from .dtypes import (
    ARRAY_PROTO,
    DTYPE_NAMES,
    MAX_ELEMENTS,
    MAX_RANK,
    DType,
    Layout,
    check_dims,
    dtype_name,
    numpy_dtype,
)
from .runs import fixed_run, single, varint_run
from .wire import (
    SMALL,
    Malformed,
    assemble,
    count_varints,
    read_key,
    read_varint,
    skip_field,
    small_varints,
    varint_blocks,
)

FIXED = ARRAY_PROTO.fixed  # ArrayProto's fixed-width fields: field -> (wire type, width, dtype)
MAX_INPUTS = 4096  # distinct input names in one request
MAX_PARTS = 64  # occurrences of one input's ArrayProto that protobuf would merge
MAX_OUTPUT_FILTER = 4096


class WireArray:
    """An array message (``ArrayProto`` by default; ``layout`` says which) as it came off the
    wire.

    Decoding takes two passes over the request's own bytes, and keeps no copy of them:
    ``scan`` (at ``decode_request``) validates every field as protobuf would and counts the
    values of each field, reading dtype and dims; ``to_numpy`` then checks dtype, shape and
    count, allocates the one output array and decodes only the dtype's field into it, in
    bounded blocks (raw ``tensor_content`` is a view).  Cost is linear in the body for every
    layout (packed, unpacked runs, values interleaved with unknown fields) and extra memory is
    bounded by a small constant times the body, plus the output."""

    __slots__ = ("_buf", "_content", "_counts", "_dims", "_parts", "_pieces", "_view", "dtype",
                 "layout")

    def __init__(self, buf: memoryview, layout: Layout = ARRAY_PROTO) -> None:
        self._buf = buf
        self.layout = layout
        self._parts: List[Tuple[int, int]] = []
        self.dtype = 0
        self._dims = Dims()
        self._counts: Dict[int, int] = {}
        self._pieces: Dict[int, int] = {}
        self._view: Dict[int, int] = {}  # field -> offset of its values when one packed piece
        self._content = (0, 0)  # (offset, size) of the last tensor_content: last one wins

    def add_part(self, start: int, end: int) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise Malformed(f"one input's {self.layout.message} split into more than "
                            f"{MAX_PARTS} parts")
        self._parts.append((start, end))

    @property
    def dims(self) -> List[int]:
        return self._dims.dims

    def count(self, field: int) -> int:
        return self._counts.get(field, 0)

    def fields_present(self) -> List[int]:
        return sorted(f for f, n in self._counts.items() if n)

    # pass 1 ----------------------------------------------------------------------------------

    def scan(self, max_strings: Optional[int] = None) -> None:
        """Pass 1.  ``max_strings``: stop once the string field holds more elements than this
        (then counted as ``max_strings + 1``), before reading the rest: a request's limit."""
        buf = self._buf
        lay = self.layout
        fixed_fields, varint_fields, names = lay.fixed, lay.varints, lay.names
        string, dtype_field, shape_field, content = lay.string, lay.dtype, lay.shape, lay.content
        opaque = lay.opaque
        room = (1 << 62) if max_strings is None else max_strings  # strings still allowed
        for pos, end in self._parts:
            while pos < end:
                key, pos = read_key(buf, pos, end)
                field, wire = key >> 3, key & 7
                at = pos
                n = -1
                if field in fixed_fields:
                    fwire, width, _ = fixed_fields[field]
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if pos + size > end or size % width:
                            raise Malformed(f"packed {names[field]} of {size} bytes")
                        n, at, pos = size // width, pos, pos + size
                    elif wire == fwire:
                        if single(buf, pos, end, key, pos + width):
                            if pos + width > end:
                                raise Malformed(f"{names[field]} runs past its message")
                            n, pos = 1, pos + width
                        else:
                            n, pos = fixed_run(buf, pos, end, key, width)
                elif field in varint_fields:
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if pos + size > end:
                            raise Malformed(f"packed {names[field]} runs past its message")
                        n, at, pos = count_varints(buf, pos, pos + size), pos, pos + size
                    elif wire == 0:
                        after = read_varint(buf, pos, end)[1]
                        if single(buf, pos, end, key, after):
                            n, pos = 1, after
                        else:
                            n, pos = varint_run(buf, pos, end, key)
                elif field == string and wire == 2:
                    size, pos = read_varint(buf, pos, end)
                    if pos + size > end:
                        raise Malformed(f"{names[string]} runs past its message")
                    n, pos = 1, pos + size
                    if room == 0:
                        self._counts[string] = self._counts.get(string, 0) + 1
                        return
                    room -= 1
                elif field == dtype_field and wire == 0:
                    v, pos = read_varint(buf, pos, end)
                    self.dtype = (v + (1 << 31)) % (1 << 32) - (1 << 31)  # enums are int32
                    continue
                elif field in opaque and wire == 2:  # values never decoded: counted, checked
                    size, pos = read_varint(buf, pos, end)
                    if pos + size > end:
                        raise Malformed(f"{names[field]} runs past its message")
                    n, pos = 1, pos + size
                elif field in (shape_field, content) and wire == 2:
                    size, pos = read_varint(buf, pos, end)
                    if pos + size > end:
                        raise Malformed(f"{names.get(field, 'array_shape')} runs past its message")
                    if field == content:
                        self._content = (pos, size)
                    elif lay.nested_dims:
                        self._dims.read_tensor_shape(buf, pos, pos + size)
                    else:
                        self._dims.read_array_shape(buf, pos, pos + size)
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

    # pass 2 ----------------------------------------------------------------------------------

    def _fill(self, field: int, out: np.ndarray) -> None:
        """Decode every value of ``field`` into ``out`` (sized by ``scan``'s count)."""
        buf = self._buf
        i = 0
        fixed = self.layout.fixed.get(field)
        varints = field in self.layout.varints
        string = self.layout.string
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
                elif varints and wire in (0, 2):
                    if wire == 2:
                        size, pos = read_varint(buf, pos, end)
                        if size <= SMALL:
                            vals = np.array(small_varints(buf, pos, pos + size), np.uint64)
                            out[i : i + vals.size] = from_varints(vals, out.dtype)
                            i += vals.size
                        else:
                            for b, ends in varint_blocks(buf, pos, pos + size):
                                vals = assemble(b, ends)
                                out[i : i + vals.size] = from_varints(vals, out.dtype)
                                i += vals.size
                        pos += size
                    elif single(buf, pos, end, key, read_varint(buf, pos, end)[1]):
                        v, pos = read_varint(buf, pos, end)
                        out[i] = from_varint(v, out.dtype)
                        i += 1
                    else:
                        n, stop = varint_run(buf, pos, end, key)
                        odd = 0  # values are every other varint, after each tag
                        for b, ends in varint_blocks(buf, pos - 1, stop):
                            vals = assemble(b, ends)[1 - odd :: 2]
                            odd = (odd + ends.size) % 2
                            out[i : i + vals.size] = from_varints(vals, out.dtype)
                            i += vals.size
                        pos = stop
                elif field == string and wire == 2:
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
        fixed = self.layout.fixed.get(field)
        if fixed is not None:
            at = self._view.get(field)
            if self._pieces.get(field) == 1 and at is not None:  # one packed piece: a view
                return np.frombuffer(self._buf, fixed[2], n, at)
            dt = np.dtype(fixed[2])
        else:
            dt = np.dtype(object if field == self.layout.string else (dtype or np.uint64))
        out = np.empty(n, dtype=dt)
        if n:
            self._fill(field, out)
        return out

    @property
    def strings(self) -> List[bytes]:
        return list(self.values(self.layout.string))

    # conversion ------------------------------------------------------------------------------

    def to_numpy(self, name: str) -> np.ndarray:
        """Validate dtype, shape and value count, then build the array (no per-element loop)."""
        lay = self.layout
        dt = lay.dtypes.get(self.dtype)
        if dt is None:
            if self.dtype in DTYPE_NAMES:
                raise BadRequest(
                    f"input '{name}' has dtype {dtype_name(self.dtype)}, which is not supported; "
                    f"expected one of {lay.supported}"
                )
            raise BadRequest(
                f"input '{name}' has invalid dtype enum value {self.dtype}; "
                f"expected one of {lay.supported}"
            )
        shape = self.shape(name)
        expected = 1
        for d in shape:
            expected *= d
        npdt = numpy_dtype(dt, name)
        field = lay.field_of[dt.code]
        if self._content[1]:
            return self._from_content(name, dt, npdt, shape, expected)
        got = self.count(field)
        if got != expected:
            raise BadRequest(
                f"input '{name}' has {got} values in {lay.names[field]} but shape "
                f"{list(shape)} needs {expected}{lay.short}"
            )
        # values in a field other than the dtype's (the common case, none, is checked cheaply)
        if len(self._counts) > (field in self._counts):
            for other in self.fields_present():
                if other != field:
                    raise BadRequest(
                        f"input '{name}' of dtype {dt.name} carries values in {lay.names[other]}; "
                        f"expected them in {lay.names[field]}"
                    )
        raw = field in lay.fixed or field == lay.string  # values in the field's own type
        return self.values(field, None if raw else npdt).reshape(shape)

    def _from_content(self, name: str, dt: DType, npdt: np.dtype, shape: Tuple[int, ...],
                      expected: int) -> np.ndarray:
        """The values as raw little-endian bytes (``tensor_content``): a view of the body,
        its length checked against the shape first."""
        names = self.layout.names
        if dt.numpy == "object":
            raise BadRequest(f"input '{name}' of dtype {dt.name} carries tensor_content; expected "
                             f"its values in {names[self.layout.string]}")
        others = self.fields_present()
        if others:
            raise BadRequest(f"input '{name}' carries values in both tensor_content and "
                             f"{names[others[0]]}; expected them in one of the two")
        at, size = self._content
        need = expected * npdt.itemsize
        if size != need:
            raise BadRequest(f"input '{name}' has {size} bytes of tensor_content but shape "
                             f"{list(shape)} of {dt.name} needs {need}")
        if dt.numpy == "bool":  # one byte each; any nonzero byte is true
            flags: np.ndarray = np.frombuffer(self._buf, np.uint8, expected, at) != 0
            return flags.reshape(shape)
        return np.frombuffer(self._buf, npdt.newbyteorder("<"), expected, at).reshape(shape)

    def shape(self, name: str) -> Tuple[int, ...]:
        if self._dims.rank_over:  # dims past MAX_RANK were not kept: say so as check_dims would
            raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
        if self._dims.unknown_rank:
            raise BadRequest(f"input '{name}' has unknown_rank set in its tensor_shape; expected "
                             "a tensor of known shape")
        check_dims(name, self.dims)
        return tuple(self.dims)


__all__ = ["FIXED", "MAX_ELEMENTS", "MAX_INPUTS", "MAX_OUTPUT_FILTER", "MAX_PARTS", "WireArray"]
