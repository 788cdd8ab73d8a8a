"""TF Serving's gRPC messages by hand, fast lane: every layout protobuf accepts decodes to what
protobuf's own classes read (TF Serving's generated descriptors, loaded without TensorFlow:
``tfs_protos``), every reply parses with them and equals what TF Serving builds, and every
malformed or hostile body is one line of 400.  ``test_tfs_grpc_tf`` checks the same against
TensorFlow itself (``make_tensor_proto``/``make_ndarray``, the installed ``tensorflow_serving``)."""

from __future__ import annotations

import contextlib
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tfserverless.errors import BadRequest, ModelError
from tfserverless.protocol import Call, Signature, TensorSpec
from tfserverless.protocol.signature import find_signature
from tfserverless.protocol.tensor_proto import decode_tensor, encode_tensor
from tfserverless.protocol.tfs_grpc import TFServingGrpc, decode_predict
from tfserverless.protocol.tfs_messages import ModelSpec

from .test_eas import SETTINGS, f32_bits, f64_bits, i32, i64, key, ld, u32, varint
from .tfs_protos import Oracle

P = Oracle()
#: dtype code -> numpy dtype, and the TensorProto field (number, name) its values travel in
NP: Dict[int, Any] = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16,
                      6: np.int8, 7: object, 9: np.int64, 10: np.bool_, 17: np.uint16,
                      19: np.float16, 22: np.uint32, 23: np.uint64}
try:  # bfloat16 is ml_dtypes' (TensorFlow >= 2.13); without it, DT_BFLOAT16 is refused
    import ml_dtypes

    BF16: Any = np.dtype(ml_dtypes.bfloat16)
    NP[14] = BF16
except ImportError:
    BF16 = None
FIELDS = {5: "float_val", 6: "double_val", 7: "int_val", 8: "string_val", 10: "int64_val",
          11: "bool_val", 13: "half_val", 16: "uint32_val", 17: "uint64_val"}
#: fields never decoded: values there are refused as values in the wrong field
OTHER = {9: "scomplex_val", 12: "dcomplex_val", 14: "resource_handle_val", 15: "variant_val"}
FIELD_OF = {1: 5, 2: 6, 3: 7, 4: 7, 5: 7, 6: 7, 17: 7, 7: 8, 9: 10, 10: 11, 14: 13, 19: 13,
            22: 16, 23: 17}
F, S = 1, 7


def refused(f: Callable[[], Any]) -> str:
    with pytest.raises(BadRequest) as e:
        f()
    assert "\n" not in e.value.message and e.value.status == 400
    return e.value.message


# --- what protobuf reads, converted by our rules (the reference) ------------------------------

def reference(m: Any) -> Optional[np.ndarray]:
    """The array a parsed TensorProto ``m`` must decode to, or None where it must be refused:
    dtype unsupported, unknown rank, a bad shape, values not exactly one per element, values
    in two fields."""
    if m.dtype not in NP or m.tensor_shape.unknown_rank:
        return None
    dims = [d.size for d in m.tensor_shape.dim]
    if len(dims) > 32 or any(d < 0 or d > 1 << 40 for d in dims) or \
            int(np.prod([max(d, 1) for d in dims], dtype=object)) > 1 << 40:
        return None
    n = int(np.prod(dims, dtype=object))
    dt = np.dtype(NP[m.dtype])
    present = [f for f, name in {**FIELDS, **OTHER}.items() if len(getattr(m, name))]
    if m.tensor_content:
        if dt.kind == "O" or present or len(m.tensor_content) != n * dt.itemsize:
            return None
        a = np.frombuffer(m.tensor_content, dt.newbyteorder("<"))
        return (a.view(np.uint8) != 0 if dt == np.bool_ else a).reshape(dims)
    field = FIELD_OF[m.dtype]
    vals = list(getattr(m, FIELDS[field]))
    if len(vals) != n or any(f != field for f in present):
        return None
    if dt.kind == "O":
        a = np.empty(n, object)
        a[:] = vals
    elif field in (7, 13):  # int32 fields: truncated to the dtype, 16-bit floats as bits
        ints = np.array(vals, np.int64)
        a = ints.astype(np.uint16).view(dt) if field == 13 else ints.astype(dt)
    else:
        a = np.array(vals, dtype=dt)
    return a.reshape(dims)


def same(ours: np.ndarray, want: np.ndarray) -> bool:
    if ours.dtype != want.dtype or ours.shape != want.shape:
        return False
    if ours.dtype.kind == "f" or ours.dtype == BF16:
        a, b = ours.astype(np.float64), want.astype(np.float64)
        nan = np.isnan(a)
        return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan], b[~nan]))
    return bool(ours.tolist() == want.tolist())


# --- TensorProto bytes of every layout ---------------------------------------------------------

@st.composite
def unknown_tensor_field(draw: Any) -> bytes:
    """A field TensorProto does not have (19 and up), or float8_val (18: bytes, skipped)."""
    field = draw(st.integers(18, 2000))
    wire = 2 if field == 18 else draw(st.sampled_from([0, 1, 2, 5]))
    payload = {0: st.integers(0, (1 << 64) - 1).map(varint), 1: st.binary(min_size=8, max_size=8),
               5: st.binary(min_size=4, max_size=4)}
    if wire == 2:
        return ld(field, draw(st.binary(max_size=20)))
    return key(field, wire) + draw(payload[wire])


VALUES = {5: f32_bits, 6: f64_bits, 7: i32.map(varint), 13: i32.map(varint),
          10: i64.map(varint), 11: st.integers(0, 3).map(varint), 16: u32.map(varint),
          17: st.integers(0, (1 << 64) - 1).map(varint), 8: st.binary(max_size=6)}


@st.composite
def value_pieces(draw: Any, field: int, n: int) -> List[bytes]:
    """``n`` values of ``field``, split into packed and unpacked pieces."""
    vals = [draw(VALUES[field]) for _ in range(n)]
    pieces, i = [], 0
    while i < n:
        j = draw(st.integers(i + 1, n))
        chunk = vals[i:j]
        if field == 8:
            pieces += [ld(8, v) for v in chunk]
        elif draw(st.booleans()):
            pieces.append(ld(field, b"".join(chunk)))
        else:
            wire = {5: 5, 6: 1}.get(field, 0)
            pieces += [key(field, wire) + v for v in chunk]
        i = j
    return pieces


@st.composite
def tensor_pieces(draw: Any) -> List[bytes]:
    dtype = draw(st.sampled_from(sorted(NP) * 4 + [0, 8, 14, 18, 20, 21, 99, -1]))
    dims = draw(st.lists(st.integers(0, 4), max_size=3) | st.lists(st.integers(-2, 1 << 41), max_size=2))
    n = int(np.prod(dims)) if dims and all(0 <= d <= 4 for d in dims) else 1
    count = max(0, n + draw(st.sampled_from([0, 0, 0, 0, -1, 1])))
    pieces = [key(1, 0) + varint(dtype)]
    for d in dims:  # one Dim each; some split over two tensor_shape occurrences (they merge)
        inner = key(1, 0) + varint(d) + (ld(2, b"n") if draw(st.booleans()) else b"")
        pieces.append(ld(2, ld(2, inner)))
    if draw(st.sampled_from([False] * 9 + [True])):
        pieces.append(ld(2, key(3, 0) + varint(1)))  # unknown_rank
    itemsize = np.dtype(NP.get(dtype, np.uint8)).itemsize if NP.get(dtype) is not object else 1
    mode = draw(st.sampled_from(["field", "field", "content", "both", "other"]))
    if mode in ("content", "both"):
        pieces.append(ld(4, draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))))
    if mode in ("field", "both"):
        pieces += draw(value_pieces(FIELD_OF.get(dtype, 5), count))
    if mode == "other":
        pieces += draw(value_pieces(draw(st.sampled_from(sorted(VALUES))), count))
    if draw(st.sampled_from([False] * 5 + [True])):  # complex values, a resource handle, a variant
        pieces.append(draw(st.sampled_from([ld(9, b"\0" * 8), key(12, 1) + b"\0" * 8, ld(14, b""),
                                            ld(15, ld(1, b"t"))])))
    for _ in range(draw(st.integers(0, 3))):
        pieces.insert(draw(st.integers(0, len(pieces))), draw(unknown_tensor_field()))
    return list(draw(st.permutations(pieces)))


def tensor_proto() -> Any:
    return tensor_pieces().map(b"".join)


def predict_body(tensor: bytes, *more: bytes) -> bytes:
    """A PredictRequest of input 'x' = ``tensor``, its value sent in parts when ``more``
    (protobuf merges them)."""
    return ld(2, ld(1, b"x") + b"".join(ld(2, p) for p in (tensor, *more)))


def check_against_protobuf(body: bytes) -> None:
    msg = P["tensorflow.serving.PredictRequest"].FromString(body)
    want = reference(msg.inputs["x"])
    try:
        ours = decode_predict(body).inputs["x"].to_numpy("x")
    except BadRequest as e:
        assert "\n" not in e.message
        assert want is None, (e.message, want)
        return
    assert want is not None, ours
    assert same(ours, want), (ours, want)


@SETTINGS
@given(pieces=tensor_pieces(), split=st.integers(0, 100))
@example(pieces=[key(1, 0) + varint(1), ld(5, struct.pack("<f", 1.5))], split=0)  # a scalar
def test_tensor_decode_matches_protobuf(pieces: List[bytes], split: int) -> None:
    """Every dtype, every layout (packed, unpacked, split runs, values in tensor_content or
    in a *_val field or both or the wrong one, occurrences merged): what protobuf reads,
    converted as TensorFlow converts it, or a one-line 400 where our rules refuse."""
    split = min(split, len(pieces))
    check_against_protobuf(predict_body(b"".join(pieces[:split]), b"".join(pieces[split:])))


@st.composite
def hostile_tensor(draw: Any) -> bytes:
    """Lone values each followed by an unknown field or a value of another field, runs broken
    and resumed, dtype and shape and tensor_content repeated (the last one wins)."""
    dtype = draw(st.sampled_from([1, 2, 3, 9, 10, 19, 22, 23]))
    pieces = [key(1, 0) + varint(dtype)]
    for _ in range(draw(st.integers(1, 60))):
        field = draw(st.sampled_from([5, 6, 7, 10, 11, 13, 16, 17]))
        pieces += draw(value_pieces(field, 1))
        sep = draw(st.sampled_from(["none", "none", "unknown", "dtype", "shape", "content"]))
        if sep == "unknown":
            pieces.append(draw(unknown_tensor_field()))
        elif sep == "dtype":
            pieces.append(key(1, 0) + varint(draw(st.sampled_from([1, 3, 9, 19]))))
        elif sep == "shape":
            pieces.append(ld(2, ld(2, key(1, 0) + varint(draw(st.integers(0, 9))))))
        elif sep == "content":
            pieces.append(ld(4, draw(st.binary(max_size=16))))
    return b"".join(pieces)


@SETTINGS
@given(tensor=hostile_tensor())
def test_hostile_tensor_layouts_match_protobuf(tensor: bytes) -> None:
    check_against_protobuf(predict_body(tensor))


@SETTINGS
@given(body=st.binary(max_size=200) | tensor_proto().map(lambda t: predict_body(t)[: len(t) // 2]))
@example(body=b"\x12\x06\n\x01x\x12\x01\x80")  # a TensorProto that is one truncated key
@example(body=b"\n\x04\x12\x02\x08\xff")  # model_spec.version with a truncated varint
def test_garbage_is_a_one_line_400_or_agrees_with_protobuf(body: bytes) -> None:
    try:
        msg = P["tensorflow.serving.PredictRequest"].FromString(body)
    except Exception:
        msg = None
    try:
        ours = decode_predict(body)
    except BadRequest as e:
        assert "\n" not in e.message and e.status == 400
        assert "PredictRequest" in e.message or "input '" in e.message
        return
    assert msg is not None, "we accepted a body protobuf refuses"
    assert sorted(ours.inputs) == sorted(msg.inputs)
    spec = msg.model_spec
    version = spec.version.value if spec.HasField("version") else None
    assert ours.spec == ModelSpec(spec.name, version, spec.version_label, spec.signature_name)
    assert ours.output_filter == list(msg.output_filter)


# --- encoding tensors ------------------------------------------------------------------------

ARRAYS = {
    "float32": st.floats(width=32), "float64": st.floats(), "int8": st.integers(-128, 127),
    "int16": st.integers(-(1 << 15), (1 << 15) - 1), "int32": i32, "int64": i64,
    "uint8": st.integers(0, 255), "uint16": st.integers(0, (1 << 16) - 1), "uint32": u32,
    "uint64": st.integers(0, (1 << 64) - 1), "float16": st.floats(width=16),
    "bool": st.booleans(), "object": st.binary(max_size=10),
}
if BF16 is not None:
    ARRAYS["bfloat16"] = st.floats(width=16)


@st.composite
def arrays(draw: Any) -> np.ndarray:
    name = draw(st.sampled_from(sorted(ARRAYS)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    n = int(np.prod(shape)) if shape else 1
    dt = BF16 if name == "bfloat16" else np.dtype(name)
    a = np.empty(n, dtype=dt)
    a[:] = draw(st.lists(ARRAYS[name], min_size=n, max_size=n))
    return a.reshape(shape)


@SETTINGS
@given(arr=arrays())
def test_encoded_tensors_parse_with_protobuf_as_tf_serving_writes_them(arr: np.ndarray) -> None:
    body = encode_tensor(arr)
    m = P["tensorflow.TensorProto"].FromString(body)
    assert [d.size for d in m.tensor_shape.dim] == list(arr.shape) and m.HasField("tensor_shape")
    if arr.dtype == object:
        assert list(m.string_val) == arr.reshape(-1).tolist() and not m.tensor_content
    else:  # numbers and bools: in the dtype's typed field (TF Serving's AsProtoField), only
        assert not m.tensor_content
        assert sum(1 for f in FIELDS.values() if len(getattr(m, f))) == (1 if arr.size else 0)
    want = reference(m)
    assert want is not None and same(want, arr)
    assert same(decode_tensor(body), arr)  # and our own decoder reads back what we wrote


def test_encoded_tensors_name_every_dtype() -> None:
    codes = {np.dtype(v).name if v is not object else "object": k for k, v in NP.items()}
    for name, code in codes.items():
        arr = np.zeros(2, dtype=BF16 if name == "bfloat16" else name)
        assert P["tensorflow.TensorProto"].FromString(encode_tensor(arr)).dtype == code
    assert list(P["tensorflow.TensorProto"].FromString(encode_tensor(np.array([1, 2], ">i4")))
                .int_val) == [1, 2]  # big-endian arrays written as their values
    assert list(P["tensorflow.TensorProto"].FromString(encode_tensor(np.array([1, 2], ">f4")))
                .float_val) == [1.0, 2.0]
    with pytest.raises(ModelError, match="complex64 cannot be carried by a TensorProto"):
        encode_tensor(np.zeros(2, np.complex64))


# --- the codec: Predict ------------------------------------------------------------------------

PREDICT, CLASSIFY, REGRESS = ("tensorflow/serving/predict", "tensorflow/serving/classify",
                              "tensorflow/serving/regress")


class Sigs:
    """The ``Signatures`` seam: what a codec needs of a model."""

    default_signature = "other"

    def __init__(self) -> None:
        self.signatures = {
            "serving_default": Signature(
                "serving_default", {"x": TensorSpec("x", F, (-1, 3), "x:0"),
                                    "n": TensorSpec("n", 9, None, "n:0")},
                {"y": TensorSpec("y", F, (-1, 3), "y:0"), "z": TensorSpec("z", S, (), "z:0")},
                PREDICT),
            "other": Signature("other", {"h": TensorSpec("h", 19, (-1,))},
                               {"h2": TensorSpec("h2", 19, (-1,))}, PREDICT),
            "cls": Signature("cls", {"inputs": TensorSpec("inputs", S, (-1,), "tf_example:0")},
                             {"classes": TensorSpec("classes", S, (-1, 2)),
                              "scores": TensorSpec("scores", F, (-1, 2))}, CLASSIFY),
            "reg": Signature("reg", {"inputs": TensorSpec("inputs", S, (-1,))},
                             {"outputs": TensorSpec("outputs", F, (-1, 1))}, REGRESS),
            "tf2": Signature("tf2", {"examples": TensorSpec("examples", S, (-1,))},
                             {"scores": TensorSpec("scores", F, (-1, 3)),
                              "outputs": TensorSpec("outputs", F, (-1,))}, PREDICT),
            "floats": Signature("floats", {"a": TensorSpec("a", F, (-1,))},
                                {"scores": TensorSpec("scores", F, (-1, 1))}, PREDICT),
        }

    def signature(self, name: str) -> Signature:
        return find_signature(self.signatures, self.default_signature, name)


CODEC = TFServingGrpc()


def tensor(m: Any, dtype: int, dims: List[int]) -> Any:
    m.dtype = dtype
    for d in dims:
        m.tensor_shape.dim.add().size = d
    return m


def predict_request(signature: str = "", filt: Tuple[str, ...] = ()) -> Any:
    r = P["tensorflow.serving.PredictRequest"]()
    r.model_spec.name, r.model_spec.signature_name = "m", signature
    r.model_spec.version.value = 7
    tensor(r.inputs["x"], F, [2, 3]).tensor_content = np.arange(6, dtype="<f4").tobytes()
    tensor(r.inputs["n"], 9, []).int64_val.append(-5)  # a scalar in a repeated field
    r.output_filter.extend(filt)
    return r


def test_predict_decodes_feeds_and_replies_as_tf_serving() -> None:
    body = predict_request(filt=("y",)).SerializeToString()
    d = CODEC.decode(body, {}, Sigs(), Call("m", "7", "predict"))
    assert d.sig.name == "serving_default" and d.outputs == ["y"]  # '' is serving_default
    assert d.feeds["x"].tolist() == [[0, 1, 2], [3, 4, 5]] and d.feeds["x"].dtype == np.float32
    assert d.feeds["n"].shape == () and d.feeds["n"].item() == -5
    assert not d.feeds["x"].flags.owndata  # tensor_content is viewed, not copied
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    z = np.array(b"\xffbytes", dtype=object)
    reply, headers = CODEC.encode({"y": y, "z": z}, d, Call("m", "00000123", "predict"))
    assert headers == {"Content-Type": "application/grpc"}
    want = P["tensorflow.serving.PredictResponse"]()
    want.model_spec.name, want.model_spec.signature_name = "m", "serving_default"
    want.model_spec.version.value = 123
    tensor(want.outputs["y"], F, [2, 3]).float_val.extend(y.reshape(-1).tolist())
    tensor(want.outputs["z"], S, []).string_val.append(b"\xffbytes")
    want.outputs["z"].tensor_shape.SetInParent()
    assert P["tensorflow.serving.PredictResponse"].FromString(reply) == want


def test_predict_signature_and_version_as_the_rest_api_resolves_them() -> None:
    sigs = Sigs()
    del sigs.signatures["serving_default"]
    r = P["tensorflow.serving.PredictRequest"]()
    tensor(r.inputs["h"], 19, [2]).half_val.extend([0x3C00, 0xC000])  # 1.0, -2.0
    d = CODEC.decode(r.SerializeToString(), {}, sigs, Call("m", "", "predict"))
    assert d.sig.name == "other" and d.feeds["h"].tolist() == [1.0, -2.0]
    reply, _ = CODEC.encode({"h2": d.feeds["h"]}, d, Call("m", "latest", "predict"))
    spec = P["tensorflow.serving.PredictResponse"].FromString(reply).model_spec
    assert (spec.name, spec.HasField("version"), spec.signature_name) == ("m", False, "other")
    assert "unknown signature_name 'nope'" in refused(lambda: CODEC.decode(
        predict_request("nope").SerializeToString(), {}, Sigs(), Call("m", "", "predict")))
    assert "unknown output_filter 'q'" in refused(lambda: CODEC.decode(
        predict_request(filt=("q",)).SerializeToString(), {}, Sigs(), Call("m", "", "predict")))
    assert "no method 'stream'" in refused(lambda: CODEC.decode(b"", {}, Sigs(), Call("m", "", "stream")))


# --- hostile: each a one-line 400, decided before anything is allocated -------------------------

def one_input(tensor_bytes: bytes, name: bytes = b"x") -> bytes:
    return ld(2, ld(1, name) + ld(2, tensor_bytes))


def x_of(tensor_bytes: bytes) -> str:
    return refused(lambda: decode_predict(one_input(tensor_bytes)).inputs["x"].to_numpy("x"))


def shape(*dims: int) -> bytes:
    return ld(2, b"".join(ld(2, key(1, 0) + varint(d)) for d in dims))


DT = key(1, 0) + varint(F)


@pytest.mark.parametrize("tensor_bytes,words", [
    (DT + shape(1_000_000, 1_000_000) + ld(5, b"\0" * 4), "has 1 values in float_val but shape "
     "[1000000, 1000000] needs 1000000000000; expected exactly one value per element (TensorFlow "
     "pads a short field with its last value; refused here"),
    (DT + shape(1 << 20, 1 << 20) + ld(4, b"\0" * 8), "has 8 bytes of tensor_content but shape "
     "[1048576, 1048576] of DT_FLOAT needs 4398046511104"),
    (DT + shape(3) + ld(4, b"\0" * 12) + ld(5, b"\0" * 12), "carries values in both "
     "tensor_content and float_val"),
    (DT + shape(1) + ld(5, b"\0" * 4) + ld(7, b"\x01"), "of dtype DT_FLOAT carries values in "
     "int_val; expected them in float_val"),
    (DT + shape(1) + ld(5, b"\0" * 4) + ld(14, b""), "carries values in resource_handle_val"),
    (key(1, 0) + varint(S) + shape(1) + ld(4, b"ab"), "of dtype DT_STRING carries tensor_content"),
    (DT + ld(2, key(3, 0) + varint(1)), "has unknown_rank set in its tensor_shape"),
    (DT + ld(2, ld(2, b"") * 1000), "has rank over 32"),
    (DT + shape(-1), "has dimension -1 in shape [-1]"),
    (DT + shape(1 << 41), "has dimension 2199023255552"),
    (key(1, 0) + varint(8) + shape(1), "dtype DT_COMPLEX64, which is not supported; expected "
     "one of DT_FLOAT, DT_DOUBLE"),
    (key(1, 0) + varint(20), "dtype DT_RESOURCE, which is not supported"),
    (key(1, 0) + varint(77), "invalid dtype enum value 77"),
    (b"", "dtype DT_INVALID, which is not supported"),
])
def test_tensors_refused_in_one_line(tensor_bytes: bytes, words: str) -> None:
    assert words in x_of(tensor_bytes)


@pytest.mark.parametrize("body,words", [
    (b"\x12\x05\x0a\x01x\x12\x05", "runs past the end of its message"),  # a value past its entry
    (b"\x0a\x80", "truncated varint"),
    (b"\x0f", "unsupported wire type 7"),
    (b"\x12\x08\x0a\x01x\x12\x03\x2d\x00\x00", "float_val runs past its message"),
    (b"\x12\x06\x0a\x01x\x12\x01\x2a", "truncated varint"),
    (b"\x12\x07\x0a\x01x\x12\x02\x2a\x03", "packed float_val of 3 bytes"),
    (ld(2, ld(1, b"\xff")), "a tensor name is not valid UTF-8"),
    (ld(1, ld(1, b"\xc3")), "model_spec.name is not valid UTF-8"),
    (ld(3, b"\xfe"), "output_filter is not valid UTF-8"),
    (ld(2, ld(1, b"x") + ld(2, b"") * 65), "split into more than 64 parts"),
    (ld(2, ld(1, b"x") + ld(2, DT + ld(2, b"\x12\x05\x08"))), "tensor_shape.dim runs past"),
    (ld(2, ld(1, b"x") + ld(2, DT + b"\x12\x05\x08")), "tensor_shape runs past its message"),
])
def test_malformed_requests_name_the_message(body: bytes, words: str) -> None:
    msg = refused(lambda: decode_predict(body))
    assert words in msg and msg.startswith("malformed protobuf body: ") and \
        msg.endswith("expected a serialized tensorflow.serving.PredictRequest"), msg


def test_counts_of_inputs_filters_and_strings_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    from tfserverless.protocol import dtypes, tensor_proto

    many = b"".join(one_input(DT, f"n{i}".encode()) for i in range(4097))
    assert "more than 4096 inputs" in refused(lambda: decode_predict(many))
    assert "more than 4096 output_filter" in refused(lambda: decode_predict(ld(3, b"y") * 4097))
    monkeypatch.setattr(dtypes, "MAX_STRINGS", 10)
    monkeypatch.setattr(tensor_proto, "MAX_STRINGS", 10)
    body = one_input(key(1, 0) + varint(S) + shape(11) + ld(8, b"s") * 11 + b"\x42\x09")
    assert "has more than 10 string elements" in refused(lambda: decode_predict(body))  # before the bad tail


def test_bfloat16_without_ml_dtypes_is_a_one_line_400(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tfserverless.protocol import dtypes

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes: ImportError
    monkeypatch.setattr(dtypes, "_RESOLVED", {})
    assert "dtype DT_BFLOAT16, which needs the ml_dtypes package" in x_of(
        key(1, 0) + varint(14) + shape(1) + ld(13, b"\x01"))


def test_long_hostile_layouts_decode_in_linear_passes() -> None:
    """Lone values each followed by an unknown field, thousands of them, and a long unpacked
    run: decoded right, with no quadratic step (each field is looked at a bounded number of
    times)."""
    n = 20_000
    vals = np.arange(n, dtype=np.float32)
    lone = b"".join(key(5, 5) + struct.pack("<f", v) + key(99, 0) + b"\x01" for v in vals.tolist())
    got = decode_predict(one_input(DT + shape(n) + lone)).inputs["x"].to_numpy("x")
    assert np.array_equal(got, vals)
    run = b"".join(key(10, 0) + varint(-v) for v in range(n))
    got = decode_predict(one_input(key(1, 0) + varint(9) + shape(n) + run)).inputs["x"].to_numpy("x")
    assert got.tolist() == [-v for v in range(n)]
    dims = ld(2, b"".join(ld(2, key(2, 2) + b"\x00" + key(1, 0) + b"\x01") for _ in range(n)))
    assert "rank over 32" in x_of(DT + dims)


def root(a: Any) -> Any:
    """What an array's memory belongs to: an array it allocated, or the body it views."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


@pytest.mark.slow  # tracemalloc over multi-MB adversarial bodies: seconds
@pytest.mark.parametrize("layout", ["int singles + unknown", "float singles + unknown",
                                    "half/bool alternating", "empty strings", "empty dims",
                                    "packed int32", "tensor_content", "resource handles"])
def test_decode_memory_is_bounded_by_the_body(layout: str) -> None:
    """Peak extra memory (tracemalloc sees numpy's buffers) stays under 4x the body plus the
    output array and 1 MiB of block scratch, whatever the layout, as for EAS's ArrayProto."""
    import tracemalloc

    n = 1 << 16
    tensors = {
        "int singles + unknown": (3, n, b"\x38\x01\xa8\x06\x01" * n),  # int_val, field 101
        "float singles + unknown": (1, n, b"\x2d\x00\x00\x80\x3f\xa8\x06\x01" * n),
        "half/bool alternating": (19, n, b"\x68\x01\x58\x01" * n),
        "empty strings": (7, 0, b"\x42\x00" * n),
        "empty dims": (1, 0, b""),
        "packed int32": (3, 4 * n, ld(7, b"\x01" * (4 * n))),
        "tensor_content": (2, n, ld(4, b"\0" * (8 * n))),
        "resource handles": (1, 0, b"\x72\x00" * n),
    }
    dtype, count, payload = tensors[layout]
    dims = ld(2, ld(2, b"") * n) if layout == "empty dims" else shape(count)
    body = one_input(key(1, 0) + varint(dtype) + dims + payload)
    out: List[Any] = []
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(BadRequest):
            out.append(decode_predict(body).inputs["x"].to_numpy("x"))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    produced = sum(a.nbytes for a in out if isinstance(root(a), np.ndarray))  # not body views
    assert peak - produced <= 4 * len(body) + (1 << 20), (peak, produced, len(body))
