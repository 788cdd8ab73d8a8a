"""TensorFlow's ``TensorProto`` (``tensorflow/core/framework/tensor.proto``) by hand: read with
the one array decoder (``WireArray`` on the ``TENSOR_PROTO`` layout: every ``*_val`` field and
``tensor_content``, shapes checked before allocation), written as TF Serving writes its replies
(numbers and bools as ``tensor_content``, strings as ``string_val``).  Plus the
length-delimited helpers every TF Serving message here is read with."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ..errors import BadRequest
from .dtypes import (
    MAX_STRINGS,
    T_DOUBLE,
    T_DTYPE,
    T_FLOAT,
    T_SHAPE,
    T_STRING,
    TENSOR_PROTO,
    check_strings,
    tensor_dtype_for_numpy,
)
from .eas_array import WireArray
from .wire import Buffer, Malformed, encode_varints, varint_bytes, view

Part = Union[bytes, memoryview]


def refused(e: Malformed, message: str) -> BadRequest:
    """``e`` said of the message a gRPC method takes (``wire.Malformed`` names EAS's)."""
    return BadRequest(f"malformed protobuf body: {e.what}; expected a serialized {message}")


# --- reading --------------------------------------------------------------------------------


def scanned(arr: WireArray, name: str) -> WireArray:
    """``arr`` validated and counted, its strings held to ``MAX_STRINGS`` before any is made."""
    arr.scan(MAX_STRINGS)
    check_strings(name, arr.count(T_STRING), counted_all=False)
    return arr


def decode_tensor(data: Buffer, name: str = "tensor") -> np.ndarray:
    """One serialized TensorProto as the array TensorFlow's ``make_ndarray`` gives, except that
    the value count must equal the shape's element count (no padding with the last value)."""
    buf = view(data)
    arr = WireArray(buf, TENSOR_PROTO)
    arr.add_part(0, len(buf))
    try:
        return scanned(arr, name).to_numpy(name)
    except Malformed as e:
        raise refused(e, "tensorflow.TensorProto") from None


# --- writing --------------------------------------------------------------------------------


def frame(field: int, parts: List[Part]) -> List[Part]:
    """``parts`` as one length-delimited field, without joining them (one copy, at the end)."""
    return [varint_bytes(field << 3 | 2) + varint_bytes(sum(len(p) for p in parts)), *parts]


def text_field(field: int, value: str) -> bytes:
    """A string field, omitted when empty (proto3)."""
    data = value.encode("utf-8")
    return varint_bytes(field << 3 | 2) + varint_bytes(len(data)) + data if data else b""


def shape_parts(dims: Optional[Sequence[int]]) -> List[Part]:
    """A TensorShapeProto's fields: one ``Dim{size}`` per dim (a zero size left out, as
    protobuf leaves defaults; -1 as TF writes it, 10 bytes), or ``unknown_rank`` for None."""
    if dims is None:
        return [b"\x18\x01"]
    return [b"\x12\x00" if d == 0 else b"\x12" + _dim(int(d)) for d in dims]


def _dim(size: int) -> bytes:
    v = varint_bytes(size)
    return varint_bytes(len(v) + 1) + b"\x08" + v


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _packed(flat: np.ndarray, field: int) -> Part:
    """The values of a numeric tensor as its typed field packs them: floats and doubles
    little-endian as they are (no copy), the rest as varints (16-bit floats by their bits,
    signed integers sign-extended, as protobuf writes int32)."""
    if field in (T_FLOAT, T_DOUBLE):
        return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).view(np.uint8).data
    if flat.dtype.itemsize == 2 and flat.dtype.kind not in "iu":  # half, bfloat16
        flat = flat.view(np.uint16)
    return encode_varints(flat.astype(np.int64))  # uint64 wraps: its bits, as varints take it


def tensor_parts(array: Any) -> List[Part]:
    """A TensorProto's fields for ``array`` (numpy or anything ``np.asarray`` takes), as TF
    Serving writes its replies by default (``AsProtoField``: the values in the dtype's typed
    repeated field, ``float_val`` etc., packed; clients read ``float_val`` or
    ``tf.make_ndarray``)."""
    a = np.asarray(array)
    dt = tensor_dtype_for_numpy(a)
    out: List[Part] = [bytes((T_DTYPE << 3,)) + varint_bytes(dt.code)]
    out += frame(T_SHAPE, shape_parts(a.shape))
    flat = a.reshape(-1)
    if dt.numpy == "object":
        for v in flat:
            out += frame(T_STRING, [_as_bytes(v)])
    elif flat.size:
        out += frame(dt.tensor_field, [_packed(flat, dt.tensor_field)])
    return out


def encode_tensor(array: Any) -> bytes:
    """One serialized TensorProto, as TF Serving's replies carry it."""
    return b"".join(tensor_parts(array))


__all__ = ["Part", "decode_tensor", "encode_tensor", "frame", "refused", "scanned",
           "shape_parts", "tensor_parts", "text_field"]
