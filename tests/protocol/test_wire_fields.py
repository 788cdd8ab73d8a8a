"""``wire.iter_fields`` and its typed accessors, and the warm-up reader built on them: a field
in another wire type than the one its reader expects is ``Malformed``, a one-line 400, never a
TypeError or AttributeError out of a cast.  Fast lane: no TensorFlow."""

from __future__ import annotations

import struct
from typing import Callable, Dict

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import decode_request, tfrecord
from tfserverless.protocol.wire import Field, Malformed, iter_fields, tagged, varint_bytes

ld = tagged  # the project's own writers


def vi(field: int, value: int) -> bytes:
    return varint_bytes(field << 3 | 0) + varint_bytes(value)


def fixed32(field: int, payload: bytes = b"\0" * 4) -> bytes:
    return varint_bytes(field << 3 | 5) + payload


def fixed64(field: int, payload: bytes = b"\0" * 8) -> bytes:
    return varint_bytes(field << 3 | 1) + payload


def test_iter_fields_yields_typed_fields_that_still_unpack_as_triples() -> None:
    msg = vi(1, 300) + ld(2, b"ab") + fixed32(3, b"\x01\0\0\0") + fixed64(4, b"\x02" + b"\0" * 7)
    fields = list(iter_fields(msg))
    assert [tuple(f) for f in fields][::2] == [(1, 0, 300), (3, 5, 1)]
    assert fields[0].varint() == 300 and fields[1].text() == "ab"
    assert bytes(fields[1].data()) == b"ab"
    (number, wire, value), = list(iter_fields(ld(7, b"x")))  # still a (field, wire, value)
    assert (number, wire) == (7, 2) and isinstance(value, memoryview) and value == b"x"


ACCESSORS: Dict[str, Callable[[Field], object]] = {
    "data": lambda f: f.data(), "text": lambda f: f.text(), "varint": lambda f: f.varint(),
    "varints": lambda f: f.varints(), "fixed32": lambda f: f.fixed("<f4"),
    "fixed64": lambda f: f.fixed("<f8"),
}
#: what each accessor takes, as protobuf reads a field of that kind: repeated numbers packed
#: (length-delimited, 2) or not
TAKES = {"data": {2}, "text": {2}, "varint": {0}, "varints": {0, 2}, "fixed32": {2, 5},
         "fixed64": {2, 1}}


@pytest.mark.parametrize("accessor", sorted(ACCESSORS))
@pytest.mark.parametrize("raw", [vi(5, 1), ld(5, b"\0" * 8), fixed32(5), fixed64(5)])
def test_an_accessor_given_another_wire_type_is_malformed(accessor: str, raw: bytes) -> None:
    f = one(raw)
    if f.wire in TAKES[accessor]:
        ACCESSORS[accessor](f)
        return
    with pytest.raises(Malformed) as e:
        ACCESSORS[accessor](f)
    assert e.value.status == 400 and "\n" not in e.value.message
    assert e.value.what.startswith(f"field 5 has wire type {f.wire}; expected"), e.value.what


def one(raw: bytes) -> Field:
    (f,) = list(iter_fields(raw))
    return f


def test_accessors_read_what_protobuf_reads() -> None:
    assert one(ld(5, np.array([1.5, -2], "<f4").tobytes())).fixed("<f4").tolist() == [1.5, -2]
    assert one(fixed32(5, struct.pack("<f", 0.25))).fixed("<f4").tolist() == [0.25]
    lone64 = one(fixed64(6, struct.pack("<d", -0.5)))
    assert lone64.fixed("<f8").tolist() == [-0.5]
    assert one(ld(7, varint_bytes(1) + varint_bytes(1 << 40))).varints().tolist() == [1, 1 << 40]
    assert one(vi(7, 9)).varints().tolist() == [9]
    with pytest.raises(Malformed, match="packs no whole 4-byte values"):
        one(ld(5, b"\0" * 5)).fixed("<f4")
    with pytest.raises(Malformed, match=r"wire type 1; expected .* fixed 32-bit \(5\)"):
        lone64.fixed("<f4")


# --- the warm-up reader (TF Serving's PredictionLog) -----------------------------------------

TENSOR = vi(1, 1) + ld(2, ld(2, vi(1, 2))) + ld(5, np.array([1, 2], "<f4").tobytes())


def record(tensor: bytes = TENSOR, *, entry: bytes = b"", spec: bytes = ld(3, b"sig"),
           request: bytes = b"", log: bytes = b"", extra: bytes = ld(3, b"y")) -> bytes:
    """A PredictionLog { predict_log { request { model_spec, inputs {"x": tensor},
    output_filter } } }, any part of it replaceable."""
    request = request or (ld(1, spec) + ld(2, entry or (ld(1, b"x") + ld(2, tensor))) + extra)
    return ld(6, log or ld(1, request))


def test_the_reader_reads_a_plain_record() -> None:
    req = decode_request(tfrecord.prediction_log_to_request(record()) or b"")
    assert req.signature_name == "sig" and req.output_filter == ["y"]
    assert req.inputs["x"].to_numpy("x").tolist() == [1, 2]


WRONG: Dict[str, bytes] = {
    # TensorProto: dtype, tensor_shape (its dim, the dim's size), values
    "dtype as bytes": record(ld(1, b"\x01") + ld(2, ld(2, vi(1, 2)))),
    "tensor_shape as a varint": record(vi(1, 1) + vi(2, 2)),
    "a dim as a varint": record(vi(1, 1) + ld(2, vi(2, 2))),
    "a dim's size as bytes": record(vi(1, 1) + ld(2, ld(2, ld(1, b"\x02")))),
    "tensor_content as a varint": record(vi(1, 1) + vi(4, 7)),
    "float_val as a varint": record(vi(1, 1) + vi(5, 7)),
    "float_val as fixed64": record(vi(1, 1) + fixed64(5)),
    "double_val as fixed32": record(vi(1, 2) + fixed32(6)),
    "int64_val as fixed32": record(vi(1, 9) + fixed32(10)),
    "half_val as fixed64": record(vi(1, 19) + fixed64(13)),
    "string_val as a varint": record(vi(1, 7) + vi(8, 1)),
    "string_val as fixed32": record(vi(1, 7) + fixed32(8)),
    # PredictionLog.predict_log, PredictLog.request
    "predict_log as a varint": vi(6, 1),
    "request as fixed32": record(log=fixed32(1)),
    # PredictRequest: model_spec (its signature_name), inputs (key, value), output_filter
    "model_spec as a varint": record(request=vi(1, 3)),
    "signature_name as a varint": record(spec=vi(3, 1)),
    "an inputs entry as a varint": record(request=vi(2, 1)),
    "an input's name as a varint": record(entry=vi(1, 1) + ld(2, TENSOR)),
    "an input's tensor as fixed64": record(entry=ld(1, b"x") + fixed64(2)),
    "output_filter as fixed64": record(extra=fixed64(3)),
}


@pytest.mark.parametrize("what", sorted(WRONG))
def test_a_field_of_the_wrong_wire_type_is_malformed_not_a_traceback(what: str) -> None:
    """Each was skipped before (a value silently dropped: a tensor zero-filled to its shape);
    now a 400 naming the field, as any other malformed protobuf."""
    with pytest.raises(BadRequest) as e:
        tfrecord.prediction_log_to_request(WRONG[what])
    assert isinstance(e.value, Malformed), e.value
    assert e.value.status == 400 and "\n" not in e.value.message
    assert "has wire type" in e.value.message, e.value.message


def test_packed_values_of_a_partial_width_are_malformed() -> None:
    """``np.frombuffer`` raised ValueError (a traceback out of the warm-up) on 5 bytes of
    packed float_val."""
    with pytest.raises(Malformed, match="packs no whole 4-byte values"):
        tfrecord.prediction_log_to_request(record(vi(1, 1) + ld(5, b"\0" * 5)))


def test_unpacked_float_and_double_values_are_read_as_protobuf_reads_them() -> None:
    """Repeated floats written one field each (``[packed = false]``, or an older writer) were
    dropped, and the tensor zero-filled to its shape."""
    for dtype, write, fmt in ((1, fixed32, "<f"), (2, fixed64, "<d")):
        field = 5 if dtype == 1 else 6
        values = b"".join(write(field, struct.pack(fmt, v)) for v in (1.5, -2.0))
        body = tfrecord.prediction_log_to_request(record(vi(1, dtype) + ld(2, ld(2, vi(1, 2)))
                                                         + values))
        got = decode_request(body or b"").inputs["x"].to_numpy("x")
        assert got.tolist() == [1.5, -2.0] and got.dtype == ("float32" if dtype == 1 else "float64")


def test_warm_up_strings_are_held_to_max_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replayed, such a tensor is refused as a request's would be; it is refused as it is read,
    before more bytes objects are made (and re-encoded, one Python call each)."""
    monkeypatch.setattr(tfrecord, "MAX_STRINGS", 100)
    tensor = vi(1, 7) + ld(2, ld(2, vi(1, 101))) + ld(8, b"a") * 101
    with pytest.raises(tfrecord.RecordError, match="'x' has more than 100 string elements"):
        tfrecord.prediction_log_to_request(record(tensor))
    body = tfrecord.prediction_log_to_request(record(vi(1, 7) + ld(2, ld(2, vi(1, 100)))
                                                     + ld(8, b"a") * 100))
    assert decode_request(body or b"").inputs["x"].to_numpy("x").tolist() == [b"a"] * 100
