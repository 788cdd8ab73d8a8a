"""The one dtype table: every wire's name for a tensor type and its numpy dtype.

``code`` is TensorFlow's DataType enum (the EAS ``ArrayDataType`` uses the same numbers),
``name`` its ``DT_*`` name (TF Serving's JSON and the EAS schema say it so), ``v2`` the Open
Inference Protocol's datatype, ``numpy`` the array dtype, ``field`` the EAS ``ArrayProto``
field carrying the values (0: EAS cannot carry it), ``tensor_field`` TensorFlow's
``TensorProto`` field.  Every protocol converts through this table and nothing else; a
``Layout`` says where one array message (``ArrayProto``, ``TensorProto``) keeps its parts.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, NamedTuple, Sequence, Tuple

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


# TensorProto field numbers (tensorflow/core/framework/tensor.proto).
T_DTYPE, T_SHAPE, T_CONTENT, T_FLOAT, T_DOUBLE, T_INT, T_STRING = 1, 2, 4, 5, 6, 7, 8
T_INT64, T_BOOL, T_HALF, T_UINT32, T_UINT64 = 10, 11, 13, 16, 17
T_SCOMPLEX, T_DCOMPLEX, T_RESOURCE, T_VARIANT = 9, 12, 14, 15  # never decoded here
TENSOR_FIELD_NAMES = {
    T_SHAPE: "tensor_shape", T_CONTENT: "tensor_content", T_FLOAT: "float_val",
    T_DOUBLE: "double_val", T_INT: "int_val",
    T_STRING: "string_val", T_INT64: "int64_val", T_BOOL: "bool_val", T_HALF: "half_val",
    T_UINT32: "uint32_val", T_UINT64: "uint64_val", T_SCOMPLEX: "scomplex_val",
    T_DCOMPLEX: "dcomplex_val", T_RESOURCE: "resource_handle_val", T_VARIANT: "variant_val",
}


class DType(NamedTuple):
    code: int
    name: str
    numpy: str  # numpy dtype name of the tensor (``numpy_dtype`` resolves it)
    field: int  # ArrayProto field carrying the values (0: EAS's ArrayProto cannot)
    v2: str  # the Open Inference Protocol's datatype
    tensor_field: int = 0  # TensorProto field carrying the values


ALL_DTYPES: Dict[int, DType] = {
    d.code: d
    for d in (
        DType(1, "DT_FLOAT", "float32", F_FLOAT, "FP32", T_FLOAT),
        DType(2, "DT_DOUBLE", "float64", F_DOUBLE, "FP64", T_DOUBLE),
        DType(3, "DT_INT32", "int32", F_INT, "INT32", T_INT),
        DType(4, "DT_UINT8", "uint8", F_INT, "UINT8", T_INT),
        DType(5, "DT_INT16", "int16", F_INT, "INT16", T_INT),
        DType(6, "DT_INT8", "int8", F_INT, "INT8", T_INT),
        DType(7, "DT_STRING", "object", F_STRING, "BYTES", T_STRING),
        DType(9, "DT_INT64", "int64", F_INT64, "INT64", T_INT64),
        DType(10, "DT_BOOL", "bool", F_BOOL, "BOOL", T_BOOL),
        DType(14, "DT_BFLOAT16", "bfloat16", 0, "BF16", T_HALF),  # numpy: ml_dtypes' bfloat16
        DType(17, "DT_UINT16", "uint16", F_INT, "UINT16", T_INT),
        DType(19, "DT_HALF", "float16", F_INT, "FP16", T_HALF),  # 16-bit patterns, both protos
        DType(22, "DT_UINT32", "uint32", 0, "UINT32", T_UINT32),
        DType(23, "DT_UINT64", "uint64", 0, "UINT64", T_UINT64),
    )
}
#: what EAS's ArrayProto, TF Serving's JSON and the V2 protocol carry
DTYPES: Dict[int, DType] = {c: d for c, d in ALL_DTYPES.items() if d.field}
#: what TensorFlow's TensorProto carries here (TF Serving's gRPC)
TENSOR_DTYPES: Dict[int, DType] = {c: d for c, d in ALL_DTYPES.items() if d.tensor_field}
BY_V2 = {d.v2: d for d in DTYPES.values()}
V2_NAMES = ", ".join(BY_V2)
_BY_NUMPY = {np.dtype(d.numpy).str: d for d in DTYPES.values() if d.numpy != "object"}
SUPPORTED_NAMES = ", ".join(d.name for d in DTYPES.values())
TENSOR_NAMES = ", ".join(d.name for d in TENSOR_DTYPES.values())
_BY_NUMPY_NAME = {d.numpy: d for d in TENSOR_DTYPES.values() if d.numpy != "object"}
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


def tensor_dtype_for_numpy(array: np.ndarray) -> DType:
    """The TensorProto dtype of a numpy array (strings/bytes/objects -> DT_STRING; by the
    dtype's name, so either byte order and ml_dtypes' bfloat16 are found)."""
    if array.dtype.kind in "OSU":
        return DTYPES[7]
    found = _BY_NUMPY_NAME.get(array.dtype.name)
    if found is None:
        raise ModelError(f"output dtype {array.dtype} cannot be carried by a TensorProto here; "
                         f"expected one of {TENSOR_NAMES}")
    return found


_RESOLVED: Dict[str, np.dtype] = {}


def numpy_dtype(dt: DType, name: str) -> np.dtype:
    """``dt``'s numpy dtype.  bfloat16 is ml_dtypes' (shipped with TensorFlow >= 2.13, imported
    on first use); where it is missing, a 400 naming input ``name``'s type."""
    found = _RESOLVED.get(dt.numpy)
    if found is not None:
        return found
    if dt.numpy == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise BadRequest(f"input '{name}' has dtype {dt.name}, which needs the ml_dtypes "
                             "package (TensorFlow >= 2.13 installs it); it is not installed "
                             "here") from None
        found = np.dtype(ml_dtypes.bfloat16)
    else:
        found = np.dtype(dt.numpy)
    _RESOLVED[dt.numpy] = found
    return found


class Layout(NamedTuple):
    """Where one array message keeps its parts: ``WireArray`` reads EAS's ``ArrayProto`` and
    TensorFlow's ``TensorProto`` alike by these field numbers."""

    message: str  # the message's name, for errors
    dtype: int  # the dtype enum's field
    shape: int  # the shape message's field
    nested_dims: bool  # TensorShapeProto: dim = 2, a Dim{size = 1} each; else ArrayShape: dim = 1
    fixed: Dict[int, Tuple[int, int, str]]  # field -> (wire type, width, little-endian dtype)
    varints: FrozenSet[int]  # fields of varint values
    string: int  # the field of string values
    opaque: FrozenSet[int]  # length-delimited values never decoded: counted, one per occurrence
    content: int  # the field of raw little-endian values (TensorProto's tensor_content); 0: none
    names: Dict[int, str]  # field -> its name in the .proto
    dtypes: Dict[int, DType]  # the dtypes it carries
    field_of: Dict[int, int]  # dtype code -> the field its values travel in
    supported: str  # those dtypes' names, for errors
    short: str  # what a count mismatch adds ('' or why no padding)


ARRAY_PROTO = Layout(
    "ArrayProto", F_DTYPE, F_SHAPE, False, {F_FLOAT: (5, 4, "<f4"), F_DOUBLE: (1, 8, "<f8")},
    frozenset((F_INT, F_INT64, F_BOOL)), F_STRING, frozenset(), 0, FIELD_NAMES, DTYPES,
    {c: d.field for c, d in DTYPES.items()}, SUPPORTED_NAMES, "")
TENSOR_PROTO = Layout(
    "TensorProto", T_DTYPE, T_SHAPE, True,
    {T_FLOAT: (5, 4, "<f4"), T_DOUBLE: (1, 8, "<f8"), T_SCOMPLEX: (5, 4, "<f4"),
     T_DCOMPLEX: (1, 8, "<f8")},
    frozenset((T_INT, T_INT64, T_BOOL, T_HALF, T_UINT32, T_UINT64)), T_STRING,
    frozenset((T_RESOURCE, T_VARIANT)), T_CONTENT,
    TENSOR_FIELD_NAMES, TENSOR_DTYPES, {c: d.tensor_field for c, d in TENSOR_DTYPES.items()},
    TENSOR_NAMES, "; expected exactly one value per element (TensorFlow pads a short field with "
    "its last value; refused here, or a few bytes could fill gigabytes)")
