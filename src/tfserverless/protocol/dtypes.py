"""The one dtype table: every wire's name for a tensor type and its numpy dtype.

``code`` is TensorFlow's DataType enum (the EAS ``ArrayDataType`` uses the same numbers),
``name`` its ``DT_*`` name (TF Serving's JSON and the EAS schema say it so), ``v2`` the Open
Inference Protocol's datatype, ``numpy`` the array dtype, ``field`` the EAS ``ArrayProto``
field carrying the values.  Every protocol converts through this table and nothing else.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Sequence

import numpy as np

from ..errors import BadRequest, ModelError

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
    v2: str  # the Open Inference Protocol's datatype


DTYPES: Dict[int, DType] = {
    d.code: d
    for d in (
        DType(1, "DT_FLOAT", "float32", F_FLOAT, "FP32"),
        DType(2, "DT_DOUBLE", "float64", F_DOUBLE, "FP64"),
        DType(3, "DT_INT32", "int32", F_INT, "INT32"),
        DType(4, "DT_UINT8", "uint8", F_INT, "UINT8"),
        DType(5, "DT_INT16", "int16", F_INT, "INT16"),
        DType(6, "DT_INT8", "int8", F_INT, "INT8"),
        DType(7, "DT_STRING", "object", F_STRING, "BYTES"),
        DType(9, "DT_INT64", "int64", F_INT64, "INT64"),
        DType(10, "DT_BOOL", "bool", F_BOOL, "BOOL"),
        DType(17, "DT_UINT16", "uint16", F_INT, "UINT16"),
        DType(19, "DT_HALF", "float16", F_INT, "FP16"),  # 16-bit patterns in int_val, as TensorProto
    )
}
BY_V2 = {d.v2: d for d in DTYPES.values()}
V2_NAMES = ", ".join(BY_V2)
_BY_NUMPY = {np.dtype(d.numpy).str: d for d in DTYPES.values() if d.numpy != "object"}
SUPPORTED_NAMES = ", ".join(d.name for d in DTYPES.values())
MAX_RANK = 32
MAX_DIM = 1 << 40  # no tensor that fits in a request body has a larger dimension
MAX_ELEMENTS = 1 << 40  # nor more elements (zero dimensions aside)
#: string elements one input may hold: each is its own Python object (~50 bytes and ~0.5 us
#: apiece, measured: 12.6M one-byte elements in a 92 KB gzip took 6.5 s and +734 MB); no
#: string tensor served in one request needs more
MAX_STRINGS = 1 << 20


def check_dims(name: str, dims: Sequence[int]) -> int:
    """The element count of input ``name``'s declared shape, or a 400: a rank over
    ``MAX_RANK``, a dimension outside 0..``MAX_DIM``, or over ``MAX_ELEMENTS`` elements even
    counting zero dimensions as 1 (numpy refuses such shapes).  Every protocol calls it on a
    client's shape before anything is allocated from it."""
    if len(dims) > MAX_RANK:
        raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
    count = size = 1
    for d in dims:  # at most MAX_RANK small ints: a loop beats numpy's call overhead
        if d < 0 or d > MAX_DIM:
            raise BadRequest(f"input '{name}' has dimension {d} in shape {list(dims)}; "
                             f"expected sizes from 0 to {MAX_DIM}")
        count *= d
        size *= max(d, 1)
    if size > MAX_ELEMENTS:
        raise BadRequest(f"input '{name}' has shape {list(dims)}, over {MAX_ELEMENTS} elements; "
                         "expected a shape that fits in a request")
    return count


def check_strings(name: str, count: int, *, counted_all: bool = True) -> None:
    """A 400 for a string input of more than ``MAX_STRINGS`` elements, before they are made
    (``counted_all`` false: counting stopped past the limit, so ``count`` is a lower bound)."""
    if count > MAX_STRINGS:
        held = count if counted_all else f"more than {MAX_STRINGS}"
        raise BadRequest(f"input '{name}' has {held} string elements; expected at most "
                         f"{MAX_STRINGS} in one request")


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
