"""The hand-written codec against protobuf's own generated code (the oracle), plus edge cases."""

from __future__ import annotations

import contextlib
import struct
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tfserverless import protocol
from tfserverless.errors import BadRequest, ModelError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# --- a raw wire writer for the tests: packed or unpacked, unknown fields, split messages -------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


u32 = st.integers(0, (1 << 32) - 1)
i32 = st.integers(-(1 << 31), (1 << 31) - 1)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
f32_bits = u32.map(lambda b: struct.pack("<I", b))
f64_bits = st.integers(0, (1 << 64) - 1).map(lambda b: struct.pack("<Q", b))


@st.composite
def unknown_field(draw: Any) -> bytes:
    field = draw(st.integers(9, 2000))
    wire = draw(st.sampled_from([0, 1, 2, 5]))
    if wire == 0:
        return key(field, 0) + varint(draw(st.integers(0, (1 << 64) - 1)))
    if wire == 1:
        return key(field, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return key(field, 5) + draw(st.binary(min_size=4, max_size=4))
    return ld(field, draw(st.binary(max_size=20)))


@st.composite
def numeric_piece(draw: Any) -> bytes:
    field = draw(st.sampled_from([3, 4, 5, 7, 8]))
    packed = draw(st.booleans())
    n = draw(st.integers(0, 40))
    if field == 3:
        items = [draw(f32_bits) for _ in range(n)]
        return ld(3, b"".join(items)) if packed else b"".join(key(3, 5) + x for x in items)
    if field == 4:
        items = [draw(f64_bits) for _ in range(n)]
        return ld(4, b"".join(items)) if packed else b"".join(key(4, 1) + x for x in items)
    gen = {5: i32, 7: i64, 8: st.integers(0, 3)}[field]
    vals = [varint(draw(gen)) for _ in range(n)]
    return ld(field, b"".join(vals)) if packed else b"".join(key(field, 0) + v for v in vals)


@st.composite
def array_proto(draw: Any) -> bytes:
    pieces: List[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["dtype", "shape", "num", "num", "num", "str", "unknown"]))
        if kind == "dtype":
            pieces.append(key(1, 0) + varint(draw(st.integers(-3, 30))))
        elif kind == "shape":
            dims = draw(st.lists(st.integers(-2, 10 ** 12), max_size=5))
            if draw(st.booleans()):
                body = ld(1, b"".join(varint(d) for d in dims))
            else:
                body = b"".join(key(1, 0) + varint(d) for d in dims)
            pieces.append(ld(2, body))
        elif kind == "num":
            pieces.append(draw(numeric_piece()))
        elif kind == "str":
            pieces.append(ld(6, draw(st.binary(max_size=12))))
        else:
            pieces.append(draw(unknown_field()))
    return b"".join(pieces)


names = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=6)


@st.composite
def predict_request_bytes(draw: Any) -> bytes:
    pieces: List[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["sig", "input", "input", "input", "filter", "unknown"]))
        if kind == "sig":
            pieces.append(ld(1, draw(names).encode()))
        elif kind == "filter":
            pieces.append(ld(3, draw(names).encode()))
        elif kind == "unknown":
            pieces.append(draw(unknown_field()))
        else:
            entry = ld(1, draw(st.sampled_from(["a", "b", "images"])).encode())
            # a value split in two occurrences must merge, as protobuf merges messages
            for _ in range(draw(st.integers(0, 2))):
                entry += ld(2, draw(array_proto()))
            pieces.append(ld(2, entry))
    return b"".join(pieces)


def ours_as_dict(req: protocol.WireRequest) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sig": req.signature_name, "filter": list(req.output_filter),
                           "inputs": {}}
    for name, a in req.inputs.items():
        out["inputs"][name] = {
            "dtype": a.dtype,
            "dims": list(a.dims),
            "float": float_bits(a.values(3)),
            "double": a.values(4).view(np.uint64).tolist(),
            "int": a.values(5).view(np.int64).astype(np.int32).tolist(),
            "int64": a.values(7).view(np.int64).tolist(),
            "bool": (a.values(8) != 0).tolist(),
            "str": list(a.strings),
        }
    return out


def float_bits(values: np.ndarray) -> List[int]:
    """float32 bit patterns, every NaN as the quiet NaN: the oracle hands float_val out as
    Python floats (doubles), and a signalling NaN's payload does not survive the round trip."""
    bits = values.view(np.uint32).copy()
    bits[np.isnan(values)] = 0x7FC00000
    return list(bits.tolist())


def oracle_as_dict(msg: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sig": msg.signature_name, "filter": list(msg.output_filter),
                           "inputs": {}}
    for name, a in msg.inputs.items():
        out["inputs"][name] = {
            "dtype": a.dtype,
            "dims": list(a.array_shape.dim),
            "float": float_bits(np.array(a.float_val, np.float32)),
            "double": np.array(a.double_val, np.float64).view(np.uint64).tolist(),
            "int": list(a.int_val),
            "int64": list(a.int64_val),
            "bool": list(a.bool_val),
            "str": list(a.string_val),
        }
    return out


@SETTINGS
@given(body=predict_request_bytes())
@example(body=b"\x12\n\n\x01a\x12\x05\x1d\x01\x00\x80\x7f")  # a signalling NaN float (found by hypothesis)
def test_decode_matches_protobuf(predict_pb2: Any, body: bytes) -> None:
    msg = predict_pb2.PredictRequest()
    msg.ParseFromString(body)
    ours = protocol.decode_request(body)
    assert ours_as_dict(ours) == oracle_as_dict(msg)


@st.composite
def adversarial_array(draw: Any) -> bytes:
    """Layouts chosen to hurt a decoder: lone unpacked elements each followed by an unknown
    field or another value field, runs broken and resumed, repeated dtype and shape fields."""
    pieces: List[bytes] = [key(1, 0) + varint(draw(st.sampled_from([1, 2, 3, 9, 10])))]
    for _ in range(draw(st.integers(1, 60))):
        field = draw(st.sampled_from([3, 4, 5, 7, 8]))
        if field == 3:
            pieces.append(key(3, 5) + draw(f32_bits))
        elif field == 4:
            pieces.append(key(4, 1) + draw(f64_bits))
        else:
            pieces.append(key(field, 0) + varint(draw({5: i32, 7: i64, 8: st.integers(0, 3)}[field])))
        sep = draw(st.sampled_from(["none", "none", "unknown", "dtype", "shape", "packed"]))
        if sep == "unknown":
            pieces.append(draw(unknown_field()))
        elif sep == "dtype":
            pieces.append(key(1, 0) + varint(draw(st.integers(0, 12))))
        elif sep == "shape":
            pieces.append(ld(2, key(1, 0) + varint(draw(st.integers(0, 9)))))
        elif sep == "packed":
            pieces.append(draw(numeric_piece()))
    return b"".join(pieces)


@SETTINGS
@given(arr=adversarial_array())
def test_adversarial_layouts_match_protobuf(predict_pb2: Any, arr: bytes) -> None:
    body = ld(2, ld(1, b"x") + ld(2, arr))
    msg = predict_pb2.PredictRequest()
    msg.ParseFromString(body)
    assert ours_as_dict(protocol.decode_request(body)) == oracle_as_dict(msg)


def _peak_bytes(fn: Any) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return int(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # tracemalloc over multi-MB adversarial bodies: seconds
@pytest.mark.parametrize("layout", ["int singles + unknown", "float singles + unknown",
                                    "int/bool alternating", "empty strings", "unpacked dims",
                                    "packed int32"])
def test_decode_memory_is_bounded_by_the_body(layout: str) -> None:
    """Peak extra memory (tracemalloc sees numpy's buffers) stays under 4x the body plus the
    output array and 1 MiB of fixed block scratch, whatever the layout.  Before the fix the
    first layout took ~577x."""
    n = 1 << 16
    arrays = {
        "int singles + unknown": (3, n, b"\x28\x01\x48\x01" * n),
        "float singles + unknown": (1, n, (b"\x1d\x00\x00\x80\x3f\x48\x01") * n),
        "int/bool alternating": (3, n, b"\x28\x01\x40\x01" * n),
        "empty strings": (1, 0, b"\x32\x00" * n),
        "unpacked dims": (1, 0, ld(2, b"\x08\x01" * n)),
        "packed int32": (3, 4 * n, ld(5, b"\x01" * (4 * n))),
    }
    dtype, count, payload = arrays[layout]
    shape = b"" if layout == "unpacked dims" else ld(2, ld(1, varint(count)))
    body = ld(2, ld(1, b"x") + ld(2, key(1, 0) + varint(dtype) + shape + payload))
    out: List[Any] = []

    def decode() -> None:
        with contextlib.suppress(BadRequest):
            out.append(protocol.decode_request(body).inputs["x"].to_numpy("x"))

    peak = _peak_bytes(decode)
    produced = sum(a.nbytes for a in out)
    assert peak - produced <= 4 * len(body) + (1 << 20), (peak, produced, len(body))


@pytest.mark.parametrize("dims", [[0, 1 << 40, 1 << 40], [1 << 40, 1 << 40, 0], [0] * 3 + [1 << 40] * 3])
def test_shapes_whose_sizes_overflow_are_400_even_with_a_zero(dims: List[int]) -> None:
    with pytest.raises(BadRequest, match="over 1099511627776 elements"):
        _wire(1, dims).to_numpy("x")


def test_too_many_inputs_parts_or_filters_are_refused() -> None:
    many = b"".join(ld(2, ld(1, f"n{i}".encode())) for i in range(protocol.MAX_INPUTS + 1))
    with pytest.raises(BadRequest, match="more than 4096 inputs"):
        protocol.decode_request(many)
    parts = ld(2, ld(1, b"x") + ld(2, b"") * (protocol.MAX_PARTS + 1))
    with pytest.raises(BadRequest, match="split into more than 64 parts"):
        protocol.decode_request(parts)
    with pytest.raises(BadRequest, match="output_filter"):
        protocol.decode_request(ld(3, b"y") * (protocol.MAX_OUTPUT_FILTER + 1))


@SETTINGS
@given(body=st.binary(max_size=200) | predict_request_bytes().map(lambda b: b[: len(b) // 2]))
@example(body=b"\xdd\x80\x80\x80\x10\x00\x00\x00\x00")  # a key over 32 bits (found by hypothesis)
@example(body=b"\x88\x80\x80\x80\x80\x00\x05")  # a key padded to 6 bytes
def test_garbage_is_refused_as_bad_request_or_agrees(predict_pb2: Any, body: bytes) -> None:
    msg = predict_pb2.PredictRequest()
    try:
        msg.ParseFromString(body)
        oracle_ok = True
    except Exception:
        oracle_ok = False
    try:
        ours = protocol.decode_request(body)
    except BadRequest as e:
        assert "\n" not in e.message and "PredictRequest" in e.message
        return
    assert oracle_ok, "we accepted a body protobuf refuses"
    assert ours_as_dict(ours) == oracle_as_dict(msg)


ARRAYS = {
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
    "int8": st.integers(-128, 127),
    "int16": st.integers(-(1 << 15), (1 << 15) - 1),
    "int32": i32,
    "int64": i64,
    "uint8": st.integers(0, 255),
    "uint16": st.integers(0, (1 << 16) - 1),
    "float16": st.floats(width=16, allow_nan=False),
    "bool": st.booleans(),
    "object": st.binary(max_size=10),
}


@st.composite
def arrays(draw: Any) -> np.ndarray:
    dt = draw(st.sampled_from(sorted(ARRAYS)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    n = int(np.prod(shape)) if shape else 1
    values = draw(st.lists(ARRAYS[dt], min_size=n, max_size=n))
    arr = np.empty(n, dtype=dt)
    arr[:] = values
    return arr.reshape(shape)


def oracle_values(a: Any) -> Tuple[List[int], Any]:
    dt = protocol.DTYPES[a.dtype]
    field = protocol.FIELD_NAMES[dt.field]
    return list(a.array_shape.dim), list(getattr(a, field))


@SETTINGS
@given(outputs=st.dictionaries(names, arrays(), max_size=4))
def test_encode_response_parses_with_protobuf(predict_pb2: Any, outputs: Dict[str, Any]) -> None:
    body = protocol.encode_response(outputs)
    msg = predict_pb2.PredictResponse()
    msg.ParseFromString(body)
    assert set(msg.outputs) == set(outputs)
    for name, arr in outputs.items():
        a = msg.outputs[name]
        assert a.dtype == protocol.dtype_for_numpy(arr).code
        dims, vals = oracle_values(a)
        assert dims == list(arr.shape)
        flat = arr.reshape(-1)
        if arr.dtype == np.float16:
            assert vals == flat.view(np.uint16).tolist()
        elif arr.dtype.kind == "f":
            assert np.array_equal(np.array(vals, arr.dtype), flat)
        else:
            assert vals == flat.tolist()
    # and our own decoder reads back exactly what we wrote
    back = protocol.decode_response(body)
    for name, arr in outputs.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape
        assert np.array_equal(back[name], arr)


@SETTINGS
@given(inputs=st.dictionaries(names, arrays(), max_size=3),
       sig=names, filt=st.lists(names, max_size=3))
def test_encode_request_parses_with_protobuf(predict_pb2: Any, inputs: Dict[str, Any],
                                             sig: str, filt: List[str]) -> None:
    body = protocol.encode_request(inputs, signature_name=sig, output_filter=filt)
    msg = predict_pb2.PredictRequest()
    msg.ParseFromString(body)
    assert msg.signature_name == sig and list(msg.output_filter) == filt
    ours = protocol.decode_request(body)
    for name, arr in inputs.items():
        got = ours.inputs[name].to_numpy(name)
        assert got.dtype == arr.dtype and np.array_equal(got, arr)


# --- unit cases --------------------------------------------------------------------------------

def test_varints_roundtrip_extremes() -> None:
    vals = np.array([0, 1, 127, 128, 300, -1, -(1 << 63), (1 << 63) - 1, -(1 << 31)], np.int64)
    data = protocol.encode_varints(vals)
    back, used = protocol.decode_varints(data)
    assert used == len(data)
    assert back.view(np.int64).tolist() == vals.tolist()
    assert protocol.encode_varints(vals) == b"".join(varint(int(v)) for v in vals)


def test_large_float_request_is_decoded_without_copying_values() -> None:
    x = np.random.RandomState(0).rand(1024, 1024).astype(np.float32)
    body = protocol.encode_request({"x": x})
    wire = protocol.decode_request(body)
    got = wire.inputs["x"].to_numpy("x")
    assert got.shape == (1024, 1024) and np.array_equal(got, x)
    assert not got.flags.owndata  # a view over the request body


def test_long_unpacked_run_decodes(predict_pb2: Any) -> None:
    n = 50_000
    vals = np.arange(n, dtype=np.float32)
    arr = key(1, 0) + varint(1) + ld(2, ld(1, varint(n))) + b"".join(
        key(3, 5) + struct.pack("<f", v) for v in vals.tolist())
    body = ld(2, ld(1, b"x") + ld(2, arr))
    got = protocol.decode_request(body).inputs["x"].to_numpy("x")
    assert np.array_equal(got, vals)
    ints = key(1, 0) + varint(9) + ld(2, ld(1, varint(n))) + b"".join(
        key(7, 0) + varint(-v) for v in range(n))
    got = protocol.decode_request(ld(2, ld(1, b"y") + ld(2, ints))).inputs["y"].to_numpy("y")
    assert got.tolist() == [-v for v in range(n)]


def _wire(dtype: int, dims: List[int], payload: bytes = b"") -> protocol.WireArray:
    body = ld(2, ld(1, b"x") + ld(2, key(1, 0) + varint(dtype) +
                                  ld(2, ld(1, b"".join(varint(d) for d in dims))) + payload))
    return protocol.decode_request(body).inputs["x"]


@pytest.mark.parametrize("dims,msg", [
    ([1_000_000_000, 784], "needs 784000000000"),
    ([-1, 784], "dimension -1"),
    ([1 << 62, 1 << 62], "dimension"),
    ([1] * 40, "rank over 32"),
])
def test_absurd_shapes_refused_before_allocation(dims: List[int], msg: str) -> None:
    w = _wire(1, dims, ld(3, struct.pack("<4f", 1, 2, 3, 4)))
    with pytest.raises(BadRequest, match=msg):
        w.to_numpy("x")


def test_value_count_and_field_mismatches() -> None:
    with pytest.raises(BadRequest, match="has 2 values in float_val but shape \\[3\\] needs 3"):
        _wire(1, [3], ld(3, struct.pack("<2f", 1, 2))).to_numpy("x")
    with pytest.raises(BadRequest, match="carries values in int_val; expected them in float_val"):
        _wire(1, [1], ld(3, struct.pack("<f", 1)) + ld(5, varint(4))).to_numpy("x")
    with pytest.raises(BadRequest, match="invalid dtype enum value 99"):
        _wire(99, [1]).to_numpy("x")
    with pytest.raises(BadRequest, match="DT_COMPLEX64, which is not supported"):
        _wire(8, [1]).to_numpy("x")


def test_unsupported_output_dtype_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="complex64 cannot be carried"):
        protocol.encode_response({"z": np.zeros(2, np.complex64)})


def test_signature_json_shape() -> None:
    sig = protocol.Signature("predict_images",
                          {"images": protocol.TensorSpec("images", 1, (-1, 784))},
                          {"scores": protocol.TensorSpec("scores", 1, (-1, 10))})
    assert protocol.signature_json(sig) == {
        "inputs": [{"name": "images", "shape": [-1, 784], "type": "DT_FLOAT"}],
        "outputs": [{"name": "scores", "shape": [-1, 10], "type": "DT_FLOAT"}],
        "signature_name": "predict_images",
    }
