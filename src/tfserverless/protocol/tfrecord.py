"""TF Serving's warm-up file: a TFRecord of ``PredictionLog`` records (CRC-checked), each
``PredictRequest`` turned into an EAS ``PredictRequest`` body, so warm-up replays through the
same predict path as traffic.  Hand-decoded protobuf, like every protocol here."""

from __future__ import annotations

import struct
from typing import Dict, List, Optional

import numpy as np

from ..errors import BadRequest
from .dtypes import DTYPES, MAX_STRINGS, check_dims, dtype_name
from .eas import encode_request
from .wire import Buffer, iter_fields

MAX_RECORDS = 1000  # TF Serving's own limit


class RecordError(BadRequest):
    """A warm-up file that cannot be read (the warm-up turns it into a 503)."""


# --- TFRecord ------------------------------------------------------------------------------

def _crc32c_table() -> List[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecords(data: bytes, *, limit: int = MAX_RECORDS) -> List[bytes]:
    """Records of a TFRecord file, each CRC-checked."""
    out: List[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise RecordError("TFRecord file truncated in a record header")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc(header) != hcrc:
            raise RecordError(f"TFRecord length CRC mismatch at byte {pos}")
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise RecordError(f"TFRecord file truncated in record {len(out) + 1}")
        record = data[start:end]
        (dcrc,) = struct.unpack("<I", data[end:end + 4])
        if masked_crc(record) != dcrc:
            raise RecordError(f"TFRecord data CRC mismatch in record {len(out) + 1}")
        out.append(record)
        if len(out) > limit:
            raise RecordError(f"more than {limit} warm-up records")
        pos = end + 4
    return out


def write_tfrecords(records: List[bytes]) -> bytes:
    parts = []
    for r in records:
        header = struct.pack("<Q", len(r))
        parts += [header, struct.pack("<I", masked_crc(header)), r,
                  struct.pack("<I", masked_crc(r))]
    return b"".join(parts)


# --- TF Serving PredictionLog -> EAS PredictRequest -----------------------------------------

# TensorProto value fields: field number -> (wire kind, numpy dtype)
_TP_FIXED = {5: "<f4", 6: "<f8"}  # float_val, double_val
_TP_VARINT = {7, 10, 11, 13, 16, 17}  # int_val, int64_val, bool_val, half_val, uint32, uint64


def _tensor_from_proto(buf: Buffer, name: str) -> np.ndarray:
    """A TF ``TensorProto`` (as TF Serving warm-up data holds it) to a numpy array.  Repeated
    values come packed or not, as protobuf reads them; a field read here in any other wire
    type is ``Malformed``."""
    dtype = 0
    dims: List[int] = []
    content = b""
    fixed: Dict[int, List[np.ndarray]] = {}
    ints: Dict[int, List[np.ndarray]] = {}
    strings: List[bytes] = []
    for f in iter_fields(buf):
        if f.number == 1:
            dtype = f.varint()
        elif f.number == 2:  # TensorShapeProto: dim = 2, each a Dim: size = 1
            for dim in iter_fields(f.data()):
                if dim.number == 2:
                    dims += [g.varint() for g in iter_fields(dim.data()) if g.number == 1]
        elif f.number == 4:
            content = bytes(f.data())
        elif f.number in _TP_FIXED:
            fixed.setdefault(f.number, []).append(f.fixed(_TP_FIXED[f.number]))
        elif f.number in _TP_VARINT:
            ints.setdefault(f.number, []).append(f.varints())
        elif f.number == 8:
            if len(strings) == MAX_STRINGS:  # as a request's: the replay would refuse them
                raise RecordError(f"warm-up input '{name}' has more than {MAX_STRINGS} string "
                                  "elements")
            strings.append(bytes(f.data()))
    dt = DTYPES.get(dtype)
    if dt is None:
        raise RecordError(f"warm-up input '{name}' has unsupported dtype {dtype_name(dtype)}")
    try:  # before filling a shape from it: dims here are the file's, read as uint64
        size = check_dims(name, dims)
    except BadRequest as e:
        raise RecordError(f"warm-up {e.message}") from None
    if dt.numpy == "object":
        arr = np.empty(len(strings), dtype=object)
        arr[:] = strings
    elif content:
        arr = np.frombuffer(content, np.dtype(dt.numpy).newbyteorder("<")).astype(dt.numpy)
    else:
        field = {"float32": 5, "float64": 6, "int64": 10, "bool": 11, "float16": 13}.get(
            dt.numpy, 7)
        if field in _TP_FIXED:
            parts = fixed.get(field, [])
            arr = np.concatenate(parts) if parts else np.zeros(0, dt.numpy)
        else:
            parts = ints.get(field, [])
            raw = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
            if dt.numpy == "float16":
                arr = raw.astype(np.uint16).view(np.float16)
            elif dt.numpy == "bool":
                arr = raw != 0
            else:
                arr = raw.view(np.int64).astype(dt.numpy)
    if arr.size != size:
        if 0 < arr.size < size:  # TensorProto repeats the last value to fill the shape
            arr = np.concatenate([arr, np.repeat(arr[-1:], size - arr.size)])
        elif arr.size == 0 and size:
            arr = np.zeros(size, dtype=dt.numpy if dt.numpy != "object" else object)
            if dt.numpy == "object":
                arr[:] = b""
        else:
            raise RecordError(f"warm-up input '{name}' has {arr.size} values for shape {dims}")
    return arr.reshape(dims)


def prediction_log_to_request(record: bytes) -> Optional[bytes]:
    """A ``PredictionLog`` record as an EAS PredictRequest body (None: not a predict log)."""
    predict_log: Optional[memoryview] = None
    for f in iter_fields(record):
        if f.number == 6:
            predict_log = f.data()
    if predict_log is None:
        return None
    request = memoryview(b"")
    for f in iter_fields(predict_log):
        if f.number == 1:
            request = f.data()
    signature = ""
    inputs: Dict[str, np.ndarray] = {}
    output_filter: List[str] = []
    for f in iter_fields(request):
        if f.number == 1:  # ModelSpec: signature_name = 3
            for g in iter_fields(f.data()):
                if g.number == 3:
                    signature = g.text()
        elif f.number == 2:  # map<string, TensorProto>
            key, tensor = "", memoryview(b"")
            for g in iter_fields(f.data()):
                if g.number == 1:
                    key = g.text()
                elif g.number == 2:
                    tensor = g.data()
            inputs[key] = _tensor_from_proto(tensor, key)
        elif f.number == 3:
            output_filter.append(f.text())
    return encode_request(inputs, signature_name=signature, output_filter=output_filter)
