"""The parts of an array message ``WireArray`` reads besides its runs of values: the shape
(EAS's ``ArrayShape`` or TensorFlow's ``TensorShapeProto``), kept up to ``MAX_RANK`` dims
whatever the wire holds, and varint values converted to the tensor's dtype."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np

from .dtypes import MAX_RANK
from .wire import (
    SMALL,
    Malformed,
    count_varints,
    decode_varints,
    read_key,
    read_varint,
    skip_field,
    small_varints,
)


def _bits16(u: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return u.astype(np.uint16).view(dtype)


# How the values of one field are converted from the uint64 varints on the wire.
_FROM_VARINT: Dict[str, Callable[[np.ndarray, np.dtype], np.ndarray]] = {
    "bool": lambda u, dtype: u != 0,
    "float16": _bits16,  # 16-bit patterns in an int32 field
    "bfloat16": _bits16,
    "uint64": lambda u, dtype: u,
}


def from_varints(u: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Varint values (uint64) as ``dtype``: integers truncated as protobuf's casts do, 16-bit
    floats from their bit patterns, bools by nonzero."""
    conv = _FROM_VARINT.get(dtype.name)
    return conv(u, dtype) if conv is not None else u.view(np.int64).astype(dtype)


def from_varint(v: int, dtype: np.dtype) -> Any:
    """One varint as ``from_varints`` converts it, in plain Python (lone elements)."""
    if dtype.kind in "iu":
        bits = dtype.itemsize * 8
        v &= (1 << bits) - 1
        return v - (1 << bits) if dtype.kind == "i" and v >> (bits - 1) else v
    return from_varints(np.array([v], np.uint64), dtype)[0]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class Dims:
    """A shape as read from any number of occurrences of its message (protobuf merges them:
    dims accumulate): at most ``MAX_RANK`` dims are kept, ``rank_over`` says more came."""

    __slots__ = ("dims", "rank_over", "unknown_rank")

    def __init__(self) -> None:
        self.dims: List[int] = []
        self.rank_over = False
        self.unknown_rank = False  # TensorShapeProto.unknown_rank: the last one wins

    def add(self, d: int) -> None:
        if len(self.dims) >= MAX_RANK:
            self.rank_over = True  # refused by WireArray.shape(); nothing more is kept
        else:
            self.dims.append(_signed(d))

    def read_array_shape(self, buf: memoryview, pos: int, end: int) -> None:
        """EAS's ArrayShape: ``repeated int64 dim = 1``, packed or not."""
        while pos < end:
            key, pos = read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 1 and wire == 2:
                size, pos = read_varint(buf, pos, end)
                if pos + size > end:
                    raise Malformed("array_shape.dim runs past its message")
                if size <= SMALL:  # every real shape: a few dims, read in Python
                    dims = [_signed(v) for v in small_varints(buf, pos, pos + size)]
                    n = len(dims)
                else:
                    n = count_varints(buf, pos, pos + size)
                if self.rank_over or len(self.dims) + n > MAX_RANK:
                    self.rank_over = True
                elif size <= SMALL:
                    self.dims.extend(dims)
                else:
                    self.dims.extend(decode_varints(buf[pos : pos + size])[0].view(np.int64).tolist())
                pos += size
            elif field == 1 and wire == 0:
                v, pos = read_varint(buf, pos, end)
                self.add(v)
            else:
                pos = skip_field(buf, pos, end, wire)

    def read_tensor_shape(self, buf: memoryview, pos: int, end: int) -> None:
        """TensorFlow's TensorShapeProto: ``repeated Dim dim = 2`` (``Dim``: ``int64 size = 1``,
        ``string name = 2``), ``bool unknown_rank = 3``.  Every Dim is read (a malformed one
        past ``MAX_RANK`` is still malformed), each in time linear in its bytes."""
        while pos < end:
            key, pos = read_key(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 2 and wire == 2:
                size, pos = read_varint(buf, pos, end)
                stop = pos + size
                if stop > end:
                    raise Malformed("tensor_shape.dim runs past its message")
                d = 0
                while pos < stop:
                    key, pos = read_key(buf, pos, stop)
                    if key == 8:  # size, a varint: the last one wins
                        d, pos = read_varint(buf, pos, stop)
                    else:
                        pos = skip_field(buf, pos, stop, key & 7)
                self.add(d)
            elif field == 3 and wire == 0:
                v, pos = read_varint(buf, pos, end)
                self.unknown_rank = v != 0
            else:
                pos = skip_field(buf, pos, end, wire)


__all__ = ["Dims", "from_varint", "from_varints"]
