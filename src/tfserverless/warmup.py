"""Warm-up requests: EAS ``.bin`` / ``.txt`` files and TF Serving's TFRecord warm-up data.

Every format becomes serialized EAS ``PredictRequest`` bodies, which the service replays
through the same predict path as traffic (``Predictor.run_predict``) before it reports ready.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import struct
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import codec
from .config import Config
from .errors import TFServerlessError
from .storage.base import redact

log = logging.getLogger("tfserverless")

TF_SERVING_WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving's own limit


class WarmupError(TFServerlessError):
    status = 503


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
            raise WarmupError("TFRecord file truncated in a record header")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc(header) != hcrc:
            raise WarmupError(f"TFRecord length CRC mismatch at byte {pos}")
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise WarmupError(f"TFRecord file truncated in record {len(out) + 1}")
        record = data[start:end]
        (dcrc,) = struct.unpack("<I", data[end:end + 4])
        if masked_crc(record) != dcrc:
            raise WarmupError(f"TFRecord data CRC mismatch in record {len(out) + 1}")
        out.append(record)
        if len(out) > limit:
            raise WarmupError(f"more than {limit} warm-up records")
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


def _tensor_from_proto(buf: bytes, name: str) -> np.ndarray:
    """A TF ``TensorProto`` (as TF Serving warm-up data holds it) to a numpy array."""
    dtype = 0
    dims: List[int] = []
    content = b""
    fixed: Dict[int, List[np.ndarray]] = {}
    ints: Dict[int, List[np.ndarray]] = {}
    strings: List[bytes] = []
    for field, wire, value in codec.iter_fields(buf):
        if field == 1 and wire == 0:
            dtype = int(value)  # type: ignore[arg-type]
        elif field == 2 and wire == 2:
            for f2, w2, v2 in codec.iter_fields(value):  # type: ignore[arg-type]
                if f2 == 2 and w2 == 2:
                    for f3, w3, v3 in codec.iter_fields(v2):  # type: ignore[arg-type]
                        if f3 == 1 and w3 == 0:
                            dims.append(int(v3))  # type: ignore[arg-type]
        elif field == 4 and wire == 2:
            content = bytes(value)  # type: ignore[arg-type]
        elif field in _TP_FIXED and wire == 2:
            fixed.setdefault(field, []).append(np.frombuffer(value, _TP_FIXED[field]))  # type: ignore[arg-type]
        elif field in _TP_VARINT and wire == 2:
            ints.setdefault(field, []).append(codec.decode_varints(value)[0])  # type: ignore[arg-type]
        elif field in _TP_VARINT and wire == 0:
            ints.setdefault(field, []).append(np.array([value], np.uint64))
        elif field == 8 and wire == 2:
            strings.append(bytes(value))  # type: ignore[arg-type]
    dt = codec.DTYPES.get(dtype)
    if dt is None:
        raise WarmupError(f"warm-up input '{name}' has unsupported dtype {codec.dtype_name(dtype)}")
    size = 1
    for d in dims:
        size *= d
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
            raise WarmupError(f"warm-up input '{name}' has {arr.size} values for shape {dims}")
    return arr.reshape(dims)


def prediction_log_to_request(record: bytes) -> Optional[bytes]:
    """A ``PredictionLog`` record as an EAS PredictRequest body (None: not a predict log)."""
    predict_log = None
    for field, wire, value in codec.iter_fields(record):
        if field == 6 and wire == 2:
            predict_log = value
    if predict_log is None:
        return None
    request = b""
    for field, wire, value in codec.iter_fields(predict_log):  # type: ignore[arg-type]
        if field == 1 and wire == 2:
            request = bytes(value)  # type: ignore[arg-type]
    signature = ""
    inputs: Dict[str, np.ndarray] = {}
    output_filter: List[str] = []
    for field, wire, value in codec.iter_fields(request):
        if field == 1 and wire == 2:  # ModelSpec
            for f2, w2, v2 in codec.iter_fields(value):  # type: ignore[arg-type]
                if f2 == 3 and w2 == 2:
                    signature = bytes(v2).decode("utf-8", "replace")  # type: ignore[arg-type]
        elif field == 2 and wire == 2:  # map<string, TensorProto>
            key, tensor = "", b""
            for f2, w2, v2 in codec.iter_fields(value):  # type: ignore[arg-type]
                if f2 == 1 and w2 == 2:
                    key = bytes(v2).decode("utf-8", "replace")  # type: ignore[arg-type]
                elif f2 == 2 and w2 == 2:
                    tensor = bytes(v2)  # type: ignore[arg-type]
            inputs[key] = _tensor_from_proto(tensor, key)
        elif field == 3 and wire == 2:
            output_filter.append(bytes(value).decode("utf-8", "replace"))  # type: ignore[arg-type]
    return codec.encode_request(inputs, signature_name=signature, output_filter=output_filter)


# --- loading ---------------------------------------------------------------------------------

def parse_warmup_file(name: str, data: bytes) -> List[bytes]:
    """EAS ``.bin`` (one PredictRequest), ``.txt`` (one base64 PredictRequest a line) or a
    TF Serving TFRecord file, as request bodies."""
    lower = name.lower().split("?")[0]
    if lower.endswith(".txt"):
        out = []
        for n, line in enumerate(data.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                out.append(base64.b64decode(line, validate=True))
            except (binascii.Error, ValueError):
                raise WarmupError(f"{lower.rsplit('/', 1)[-1]} line {n} is not base64 of a "
                                  "serialized PredictRequest") from None
        return out
    if lower.endswith("tf_serving_warmup_requests") or lower.endswith(".tfrecord"):
        bodies = [prediction_log_to_request(r) for r in read_tfrecords(data)]
        return [b for b in bodies if b is not None]
    return [data]


def load_requests(config: Config, model_dir: str,
                  read: Callable[[str, Config], bytes]) -> Tuple[str, List[bytes]]:
    """(where from, request bodies): ``WARM_UP_DATA_PATH`` if set, else the SavedModel's own
    TF Serving warm-up file, else nothing."""
    if config.warm_up_data_path:
        path = config.warm_up_data_path
        return path, parse_warmup_file(path, read(path, config))
    local = os.path.join(model_dir, TF_SERVING_WARMUP)
    if os.path.isfile(local):
        with open(local, "rb") as f:
            return TF_SERVING_WARMUP, parse_warmup_file(local, f.read())
    return "", []


def replay(config: Config, model: Any, run_predict: Callable[[Any, bytes], Any],
           read: Callable[[str, Config], bytes], info: Dict[str, Any]) -> None:
    """Replay the warm-up requests ``WARM_UP_COUNT`` times each through ``run_predict`` (the
    path traffic takes), filling ``info`` for /healthz as it goes.

    Runs as the model holder's after-load hook, so readiness waits for it.  A failing request
    is logged with its reason and recorded; it never stops the service."""
    info.update(source="", requests=0, replayed=0, failed=0, errors=[])
    t0 = time.perf_counter()
    source = config.warm_up_data_path
    try:
        source, bodies = load_requests(config, model.path, read)
    except TFServerlessError as e:
        info.update(source=redact(source), errors=[e.message])
        log.error("warm-up data not usable: %s", e.message)
        return
    info.update(source=redact(source), requests=len(bodies))
    first: List[float] = []
    for i, body in enumerate(bodies):
        for n in range(config.warm_up_count):
            t = time.perf_counter()
            try:
                run_predict(model, body)
                info["replayed"] += 1
                if n == 0:
                    first.append(time.perf_counter() - t)
            except Exception as e:  # a warm-up failure is reported, never fatal
                msg = e.message if isinstance(e, TFServerlessError) else \
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                info["failed"] += 1
                if len(info["errors"]) < 5:
                    info["errors"].append(f"request {i + 1}: {msg}")
                log.error("warm-up request %d failed: %s", i + 1, msg)
                break
    info["seconds"] = round(time.perf_counter() - t0, 3)
    if bodies:
        log.info("warm-up: %d request(s) x %d from %s in %.2fs; %s, failed %d", len(bodies),
                 config.warm_up_count, info["source"], info["seconds"],
                 f"first replay {first[0] * 1e3:.1f} ms" if first else "no replay succeeded",
                 info["failed"])


__all__ = ["WarmupError", "load_requests", "replay", "parse_warmup_file",
           "prediction_log_to_request", "read_tfrecords", "write_tfrecords"]
