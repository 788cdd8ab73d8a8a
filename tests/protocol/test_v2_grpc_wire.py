"""The hand-written ``ModelInferRequest`` reader against protobuf's generated class on every
wire layout hypothesis makes (packed and unpacked, split and merged messages, maps with
repeated keys, unknown fields), hostile layouts and garbage: the same values or one line of
400 naming the message; every limit refused before anything grows past it."""

from __future__ import annotations

import contextlib
import struct
import time
from types import ModuleType
from typing import Any, Dict, List

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tfserverless.errors import BadRequest
from tfserverless.protocol.dtypes import MAX_STRINGS
from tfserverless.protocol.grpc_wire import reading
from tfserverless.protocol.v2 import MAX_TENSORS
from tfserverless.protocol.v2_grpc import INFER_REQUEST
from tfserverless.protocol.v2_grpc_contents import CONTENTS, MAX_PARTS
from tfserverless.protocol.v2_grpc_request import MAX_PARAMETERS, InferRequest, read_infer_request

from .test_eas import SETTINGS, f32_bits, f64_bits, float_bits, key, ld, unknown_field, varint
from .test_v2_grpc import refused

u64 = st.integers(0, (1 << 64) - 1)
text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=5)
names = st.sampled_from(["a", "b", "signature_name", ""])


def read(body: bytes) -> InferRequest:
    with reading(INFER_REQUEST):
        return read_infer_request(body)


@st.composite
def param_value(draw: Any) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from([1, 2, 3, 4, 5, 0]))
        if kind in (1, 2, 5):
            pieces.append(key(kind, 0) + varint(draw(u64)))
        elif kind == 3:
            pieces.append(ld(3, draw(text).encode()))
        elif kind == 4:
            pieces.append(key(4, 1) + draw(f64_bits))
        else:
            pieces.append(draw(unknown_field()))
    return b"".join(pieces)


@st.composite
def param_entry(draw: Any) -> bytes:
    pieces = [ld(1, draw(names).encode())] + [ld(2, draw(param_value()))
                                               for _ in range(draw(st.integers(0, 2)))]
    return b"".join(draw(st.permutations(pieces)))


def values_piece(draw: Any, field: int) -> bytes:
    """Some values of one InferTensorContents field, packed or not."""
    kind, n = CONTENTS[field], draw(st.integers(0, 30))
    if kind.wire == 2:
        return b"".join(ld(field, draw(st.binary(max_size=6))) for _ in range(n))
    if kind.width:
        items = [draw(f32_bits if kind.width == 4 else f64_bits) for _ in range(n)]
        if draw(st.booleans()):
            return ld(field, b"".join(items))
        return b"".join(key(field, kind.wire) + x for x in items)
    vals = [varint(draw(st.integers(0, 3) if field == 1 else u64)) for _ in range(n)]
    if draw(st.booleans()):
        return ld(field, b"".join(vals))
    return b"".join(key(field, 0) + v for v in vals)


@st.composite
def contents(draw: Any) -> bytes:
    return b"".join(draw(unknown_field()) if f == 0 else values_piece(draw, f)
                    for f in draw(st.lists(st.integers(0, 8), max_size=5)))


@st.composite
def input_tensor(draw: Any) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["name", "datatype", "shape", "param", "contents", "contents",
                                     "unknown"]))
        if kind in ("name", "datatype"):
            pieces.append(ld(1 if kind == "name" else 2, draw(text).encode()))
        elif kind == "shape":
            dims = [varint(d) for d in draw(st.lists(st.integers(-2, 10 ** 12), max_size=4))]
            pieces.append(ld(3, b"".join(dims)) if draw(st.booleans()) else
                          b"".join(key(3, 0) + d for d in dims))
        elif kind == "param":
            pieces.append(ld(4, draw(param_entry())))
        elif kind == "contents":  # a second occurrence merges into the first
            pieces.append(ld(5, draw(contents())))
        else:
            pieces.append(draw(unknown_field()))
    return b"".join(pieces)


@st.composite
def infer_request_bytes(draw: Any) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(0, 7))):
        field = draw(st.sampled_from([1, 2, 3, 4, 5, 5, 6, 7, 0]))
        if field in (1, 2, 3):
            pieces.append(ld(field, draw(text).encode()))
        elif field == 4:
            pieces.append(ld(4, draw(param_entry())))
        elif field == 5:
            pieces.append(ld(5, draw(input_tensor())))
        elif field == 6:
            out = [ld(1, draw(names).encode())] + [ld(2, draw(param_entry()))
                                                    for _ in range(draw(st.integers(0, 2)))]
            pieces.append(ld(6, b"".join(draw(st.permutations(out)))))
        elif field == 7:
            pieces.append(ld(7, draw(st.binary(max_size=12))))
        else:
            pieces.append(draw(unknown_field()))
    return b"".join(pieces)


def plain(value: Any) -> Any:
    """A parameter value comparable across both readers (doubles by their bits)."""
    return ("f", struct.pack("<d", value)) if isinstance(value, float) else value


def oracle_param(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return None if which is None else plain(getattr(p, which))


def contents_values(field: int, values: Any) -> List[Any]:
    if field == 6:
        return float_bits(np.array(values, np.float32))
    if field == 7:
        return list(np.array(values, np.float64).view(np.uint64).tolist())
    return [bytes(v) for v in values] if field == 8 else [int(v) for v in values]


def ours_as_dict(req: InferRequest) -> Dict[str, Any]:
    def params(d: Dict[str, Any]) -> Dict[str, Any]:
        return {k: plain(v) for k, v in d.items()}

    return {
        "strings": [req.model_name, req.model_version, req.id], "params": params(req.parameters),
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.dims,
                    "params": params(t.parameters),
                    "contents": {CONTENTS[f].name: contents_values(
                        f, t.contents.values(f) if t.contents else []) for f in CONTENTS}}
                   for t in req.inputs],
        "outputs": [{"name": o.name, "params": params(o.parameters)} for o in req.outputs],
        "raw": [bytes(r) for r in req.raw],
    }


def oracle_as_dict(msg: Any) -> Dict[str, Any]:
    def params(m: Any) -> Dict[str, Any]:
        return {k: oracle_param(v) for k, v in m.items()}

    return {
        "strings": [msg.model_name, msg.model_version, msg.id], "params": params(msg.parameters),
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
                    "params": params(t.parameters),
                    "contents": {k.name: contents_values(f, getattr(t.contents, k.name))
                                 for f, k in CONTENTS.items()}} for t in msg.inputs],
        "outputs": [{"name": o.name, "params": params(o.parameters)} for o in msg.outputs],
        "raw": list(msg.raw_input_contents),
    }


@SETTINGS
@given(body=infer_request_bytes())
def test_reading_matches_protobuf(pb: ModuleType, body: bytes) -> None:
    assert ours_as_dict(read(body)) == oracle_as_dict(pb.ModelInferRequest.FromString(body))


@st.composite
def adversarial_contents(draw: Any) -> bytes:
    """Lone unpacked values each followed by an unknown field or another field's value, runs
    broken and resumed, packed pieces between."""
    pieces = []
    for _ in range(draw(st.integers(1, 40))):
        field = draw(st.integers(1, 7))
        kind = CONTENTS[field]
        if kind.width:
            pieces.append(key(field, kind.wire) + draw(f32_bits if kind.width == 4 else f64_bits))
        else:
            pieces.append(key(field, 0) + varint(draw(u64)))
        sep = draw(st.sampled_from(["none", "none", "unknown", "packed"]))
        if sep == "unknown":
            pieces.append(draw(unknown_field()))
        elif sep == "packed":
            pieces.append(values_piece(draw, draw(st.integers(1, 8))))
    return b"".join(pieces)


@settings(SETTINGS, max_examples=120)  # each example is long to draw
@given(parts=st.lists(adversarial_contents(), min_size=1, max_size=2))
def test_adversarial_contents_match_protobuf(pb: ModuleType, parts: List[bytes]) -> None:
    body = ld(5, ld(1, b"x") + b"".join(ld(5, p) for p in parts))
    assert ours_as_dict(read(body)) == oracle_as_dict(pb.ModelInferRequest.FromString(body))


@SETTINGS
@given(body=st.binary(max_size=200) | infer_request_bytes().map(lambda b: b[:len(b) // 2]))
@example(body=b"\x2a\x02\x2a\x00\x2a\x01")  # an input then a truncated one
@example(body=b"\x2a\x04\x2a\x02\x32\x05")  # packed int_contents shorter than its length
def test_garbage_is_refused_in_one_line_or_read_as_protobuf_reads_it(pb: ModuleType,
                                                                     body: bytes) -> None:
    try:
        msg = pb.ModelInferRequest.FromString(body)
    except Exception:
        msg = None
    try:
        ours = read(body)
    except BadRequest as e:
        assert "\n" not in e.message and INFER_REQUEST in e.message, e.message
        return
    assert msg is not None, "we accepted a body protobuf refuses"
    assert ours_as_dict(ours) == oracle_as_dict(msg)


def one_input(*pieces: bytes) -> bytes:
    """An FP32 input 'fp32' of ``pieces``, for the signature of that name."""
    return ld(4, ld(1, b"signature_name") + ld(2, ld(3, b"fp32"))) + \
        ld(5, ld(1, b"fp32") + ld(2, b"FP32") + b"".join(pieces))


@pytest.mark.parametrize("body,expected", [
    (ld(5, b"") * (MAX_TENSORS + 1), "more than 4096 inputs"),
    (ld(6, b"") * (MAX_TENSORS + 1), "more than 4096 outputs"),
    (ld(7, b"") * (MAX_TENSORS + 1), "more than 4096 raw_input_contents"),
    (ld(4, b"") * (MAX_PARAMETERS + 1), "more than 1024 parameters"),
    (ld(5, ld(4, b"") * MAX_PARAMETERS) + ld(6, ld(2, b"")), "more than 1024 parameters"),
    (one_input(ld(5, b"") * (MAX_PARTS + 1)), "contents split into more than 64 parts"),
    (one_input(ld(5, ld(8, b"") * (MAX_STRINGS + 1))), "more than 1048576 string elements"),
    (one_input(ld(3, varint(1) * 33)), "input 'fp32' has rank over 32"),
    (one_input((key(3, 0) + varint(1)) * 40), "input 'fp32' has rank over 32"),
    (one_input(ld(3, varint(1) * 20), ld(3, varint(1) * 20)), "input 'fp32' has rank over 32"),
    (one_input(ld(3, varint(1)), ld(5, ld(6, b"\0" * 6))), "packed fp32_contents of 6 bytes"),
    (one_input(ld(5, key(7, 1) + b"\0" * 7)), "fp64_contents runs past its message"),
    (one_input(ld(5, key(2, 0) + b"\x80" * 11)), "varint longer than 10 bytes"),
    (one_input(ld(5, key(2, 0) + b"\x80")), "truncated varint"),
    (one_input(ld(5, ld(8, b"ab")[:-1])), "runs past"),
    (one_input(ld(4, ld(2, key(4, 1) + b"\0" * 3))), "double_param runs past its message"),
    (b"\x0b\x0c", "unsupported wire type 3"),
    (b"\x00\x01", "field number 0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_limits_and_malformed_layouts_are_one_line_400s(body: bytes, expected: str) -> None:
    msg = refused(body)
    assert expected in msg, msg


def test_rank_over_the_limit_is_not_kept(pb: ModuleType) -> None:
    """Past MAX_RANK dims are counted, not kept: a million of them hold no list of a million."""
    req = read(one_input((key(3, 0) + varint(7)) * 100_000, ld(3, varint(7) * 100_000)))
    assert req.inputs[0].rank_over and len(req.inputs[0].dims) <= 32


def test_hostile_layouts_cost_time_linear_in_the_body() -> None:
    """Lone values each behind an unknown field, and long unpacked runs: reading 4x the body
    takes about 4x the time (not 16x), and long runs go through numpy, not a loop apiece."""

    def seconds(n: int, layout: str) -> float:
        pieces = {"lone": (key(2, 0) + b"\x05" + key(20, 0) + b"\x01") * n,
                  "run": (key(6, 5) + b"\0\0\x80\x3f") * n}[layout]
        body = ld(5, ld(1, b"x") + ld(2, b"INT32") + ld(3, varint(n)) + ld(5, pieces))
        start = time.perf_counter()
        with contextlib.suppress(BadRequest):
            t = read(body).inputs[0]
            assert t.contents is not None
            t.contents.values(2 if layout == "lone" else 6)
        return time.perf_counter() - start

    for layout in ("lone", "run"):
        small, big = min(seconds(1 << 12, layout) for _ in range(3)), \
            min(seconds(1 << 14, layout) for _ in range(3))
        assert big < 10 * small + 0.05, (layout, small, big)
    assert seconds(1 << 16, "run") < 0.5  # 64k unpacked floats: blocks, not a loop apiece


@pytest.mark.parametrize("field", [2, 3, 5, 6, 7, 1])
def test_long_unpacked_runs_across_decode_blocks_match_protobuf(pb: ModuleType, field: int) -> None:
    """Runs longer than a decode block (32 KiB), of varints of every length (so a block may
    end between a tag and its value), split by a packed piece and an unknown field."""
    rng = np.random.default_rng(field)
    kind = CONTENTS[field]
    n = 30_000
    if kind.width:
        items = [key(field, kind.wire) + x for x in
                 np.frombuffer(rng.bytes(n * kind.width), f"V{kind.width}").tolist()]
    else:
        bits = rng.integers(0, 64, n)
        vals = (rng.integers(0, 1 << 63, n, dtype=np.uint64, endpoint=True) >> bits.astype(np.uint64))
        items = [key(field, 0) + varint(int(v) if field != 1 else int(v) % 3) for v in vals]
    half = len(items) // 2
    body = ld(5, ld(1, b"x") + ld(5, b"".join(items[:half]) + values_piece_fixed(field) +
                                  key(99, 0) + b"\x01" + b"".join(items[half:])))
    assert ours_as_dict(read(body)) == oracle_as_dict(pb.ModelInferRequest.FromString(body))


def values_piece_fixed(field: int) -> bytes:
    """A short packed piece of ``field``."""
    kind = CONTENTS[field]
    return ld(field, b"\x01" * (kind.width or 1) * 3)


@pytest.mark.slow  # tracemalloc over multi-MB adversarial bodies: seconds
@pytest.mark.parametrize("layout", ["int singles + unknown", "float singles + unknown",
                                    "int/bool alternating", "empty bytes elements",
                                    "unpacked dims", "packed int32", "inputs", "parameters"])
def test_decode_memory_is_bounded_by_the_body(layout: str) -> None:
    """Peak extra memory while reading and decoding stays under 4x the body plus the arrays
    produced and 1 MiB of fixed scratch, whatever the layout."""
    import tracemalloc

    n = 1 << 16
    unknown = key(20, 0) + b"\x01"
    layouts = {  # datatype, element count, contents (or other fields of the input)
        "int singles + unknown": ("INT32", n, ld(5, (key(2, 0) + b"\x01" + unknown) * n)),
        "float singles + unknown": ("FP32", n, ld(5, (key(6, 5) + b"\0\0\x80\x3f" + unknown) * n)),
        "int/bool alternating": ("INT32", n, ld(5, (key(2, 0) + b"\x01" + key(1, 0) + b"\x01") * n)),
        "empty bytes elements": ("BYTES", 0, ld(5, ld(8, b"") * n)),
        "unpacked dims": ("FP32", 0, (key(3, 0) + b"\x01") * n),
        "packed int32": ("INT32", 4 * n, ld(5, ld(2, b"\x01" * (4 * n)))),
        "inputs": ("FP32", 0, b""),
        "parameters": ("FP32", 0, ld(4, ld(1, b"k" * 1000)) * (MAX_PARAMETERS + 1)),
    }
    datatype, count, payload = layouts[layout]
    shape = b"" if layout == "unpacked dims" else ld(3, varint(count))
    body = ld(5, ld(1, b"x") + ld(2, datatype.encode()) + shape + payload)
    if layout == "inputs":
        body = ld(5, ld(1, b"x") + ld(2, b"FP32") + ld(3, varint(0))) * MAX_TENSORS
    out: List[Any] = []

    def decode() -> None:
        with contextlib.suppress(BadRequest):
            out.extend(t.to_numpy(t.name) for t in read(body).inputs[:1] if t.check(None))

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        decode()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    produced = sum(a.nbytes for a in out)
    # and each input tensor's few Python objects (~520 bytes on Python 3.7: its record, dims
    # list and parameters map), linear in the body too
    per_tensor = 640 * (MAX_TENSORS if layout == "inputs" else 1)
    assert peak - produced <= 4 * len(body) + (1 << 20) + per_tensor, (peak, produced, len(body))
