"""Hostile input, round two, fast lane: every client mistake is one short line of 400, decided
before anything is allocated from what the client declared, and the same whichever JSON
parser reads the body.  No sockets, no TensorFlow."""

from __future__ import annotations

import json
import struct
import tracemalloc
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import (
    EAS,
    Call,
    Signature,
    TensorSpec,
    encode_varints,
    jsonfast,
    jsonio,
    output_names,
    tfrecord,
)
from tfserverless.protocol.examples import serialize_examples
from tfserverless.protocol.signature import find_signature
from tfserverless.protocol.tfserving import TFServing
from tfserverless.protocol.v2 import V2, header_length
from tfserverless.protocol.wire import tagged, varint_bytes

from .test_tfserving import Sigs

CALL = Call("m", "1")
HEADER = "inference-header-content-length"


def v2_body(doc: Dict[str, Any], blob: bytes = b"") -> Tuple[bytes, Dict[str, str]]:
    head = json.dumps(doc).encode()
    return head + blob, ({HEADER: str(len(head))} if blob or _binary(doc) else {})


def _binary(doc: Dict[str, Any]) -> bool:
    return any(isinstance(t, dict) and "binary_data_size" in (t.get("parameters") or {})
               for t in doc.get("inputs", []))


def v2_refused(doc: Any, blob: bytes = b"", headers: Optional[Mapping[str, str]] = None,
               sigs: Any = None) -> str:
    if isinstance(doc, bytes):
        body, hdrs = doc, {}
    else:
        body, hdrs = v2_body(doc, blob)
    with pytest.raises(BadRequest) as e:
        V2().decode(body, dict(headers) if headers is not None else hdrs, sigs or Sigs(), CALL)
    assert "\n" not in e.value.message and e.value.status == 400
    return e.value.message


def peak_bytes(f: Callable[[], Any]) -> int:
    """The most memory (Python and numpy both report here) ``f`` held at once; the JSON
    parsers' one-time allocations (some orjson releases take 8 MB on first use) first."""
    jsonio.loads(b'{"warm": [1, "up"]}', "anything")
    tracemalloc.start()
    try:
        f()
    except BadRequest:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def bytes_input(shape: List[int], size: int) -> Dict[str, Any]:
    return {"parameters": {"signature_name": "str"},
            "inputs": [{"name": "s", "shape": shape, "datatype": "BYTES",
                        "parameters": {"binary_data_size": size}}]}


# --- A: nothing is allocated from a declared shape before the data is there -----------------


def test_v2_bytes_elements_are_counted_against_the_bytes_present_before_allocating() -> None:
    """Each BYTES element needs at least its 4-byte length: 2^24 of them in 0 bytes was an
    np.empty of 128 MB (2^27: 1 GB and 2.7 s) before the 400."""
    doc = bytes_input([1 << 24], 0)
    peak = peak_bytes(lambda: V2().decode(*v2_body(doc), Sigs(), CALL))
    assert peak < 1 << 20, f"{peak} bytes held for a {len(json.dumps(doc))}-byte body"
    msg = v2_refused(doc)
    assert "needs at least 67108864" in msg and "4-byte length" in msg
    # the count that does fit still goes through the element walk (ends early: a 400)
    assert "ends after 1 of 2" in v2_refused(bytes_input([2], 8), struct.pack("<I", 1) + b"a" + b"\0" * 3)


@pytest.mark.parametrize("shape,datatype,data", [
    ([1 << 36], "BYTES", None),  # np.empty(2^36, object): MemoryError, a 500
    ([1 << 39, 1 << 39], "BYTES", None),  # numpy's "maximum dimension exceeded": a 500
    ([1 << 39, 1 << 39], "FP32", None),
    ([1 << 39, 1 << 39], "FP32", []),  # the JSON data path: refused before converting data
    ([0, 1 << 40, 1 << 40], "FP32", []),  # a zero dim does not make the others sane
])
def test_v2_shapes_past_the_element_limit_are_400(shape: List[int], datatype: str,
                                                  data: Any) -> None:
    t: Dict[str, Any] = {"name": "x" if datatype == "FP32" else "s", "shape": shape,
                         "datatype": datatype}
    if data is None:
        t["parameters"] = {"binary_data_size": 0}
    else:
        t["data"] = data
    doc = {"parameters": {"signature_name": "one" if datatype == "FP32" else "str"}, "inputs": [t]}
    msg = v2_refused(doc)
    assert ("over 1099511627776 elements" in msg or "needs at least" in msg), msg


def _varint(v: int) -> bytes:
    return encode_varints(np.array([v], np.uint64))


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def test_warmup_tensor_shape_is_checked_before_it_is_filled() -> None:
    """A warm-up TensorProto with no values is zero-filled to its shape: a shape of 2^62 was a
    ValueError (or MemoryError) out of the warm-up, not the RecordError it turns into a 503."""
    dim = _ld(2, _varint(1 << 3) + _varint(1 << 62))  # TensorShapeProto.dim {size: 2^62}
    tensor = _varint(1 << 3) + _varint(1) + _ld(2, dim)  # dtype DT_FLOAT, that shape, no values
    request = _ld(2, _ld(1, b"x") + _ld(2, tensor))  # PredictRequest.inputs {"x": tensor}
    record = _ld(6, _ld(1, request))  # PredictionLog.predict_log.request
    with pytest.raises(tfrecord.RecordError, match="expected sizes from 0 to"):
        tfrecord.prediction_log_to_request(record)


# --- B: a client's mistake is never a 500 -----------------------------------------------------


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each body read as with orjson, and as the Python 3.7 processors without it read it."""
    if request.param == "stdlib":
        monkeypatch.setattr(jsonio, "orjson", None)
    elif jsonio.orjson is None:
        pytest.skip("orjson is not installed here")
    return str(request.param)


X = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}


@pytest.mark.parametrize("datatype", [["FP64"], {"FP32": 1}, 32, None, True])
def test_v2_datatype_that_is_no_string_is_400(datatype: Any) -> None:
    """``"datatype": ["FP64"]`` was a 500 (TypeError: unhashable, in the dtype table lookup)."""
    msg = v2_refused({"inputs": [dict(X, datatype=datatype)]})
    assert "input 'x' has datatype" in msg and "expected one of FP32" in msg


def test_v2_signature_name_that_is_no_string_is_400() -> None:
    """It was ignored: the default signature answered a request meant for another."""
    assert '"signature_name" must be a string' in v2_refused(
        {"parameters": {"signature_name": ["two"]}, "inputs": [X]})


def test_v2_id_with_a_lone_surrogate_is_400_before_the_model_runs(parser: str) -> None:
    """The standard library reads ``"\\ud800"`` (orjson did too, through its NaN fallback): the
    model ran, then the reply could not be encoded, a 500."""
    body = b'{"id": "\\ud800", "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", ' \
           b'"data": [NaN, 1, 2]}]}'
    assert "surrogate" in v2_refused(body)


@pytest.mark.parametrize("req_id", ["r\u00e9\u4e2d\U0001f600", "\u0000", "\\ud800", "x" * 10000])
def test_v2_replies_echo_any_id_the_request_carried(parser: str, req_id: str) -> None:
    body = json.dumps({"id": req_id, "inputs": [dict(X, data=[float("nan"), 1, 2])]}).encode()
    decoded = V2().decode(body, {}, Sigs(), CALL)
    reply, _ = V2().encode({"y": np.array([[np.nan, 1, 2]], np.float32)}, decoded, CALL)
    assert json.loads(reply)["id"] == req_id


# --- C: one JSON rule, whichever parser reads the body ----------------------------------------

#: bodies refused, and a word of the 400 (``@`` is where a NaN elsewhere in the body goes:
#: it sent orjson's refusals to the standard library, which accepted these)
REFUSED = [
    (b'{@"a": 1e999}', "number 1e999 is past float64's range"),
    (b'{@"a": [0.5, -1e999]}', "number -1e999 is past float64's range"),
    (b'{@"a": 1' + b"0" * 400 + b'.5}', "past float64's range"),
    (b'{@"a": 1' + b"0" * 300 + b"e10}", "past float64's range"),
    (b'{@"a": "\\ud800"}', "lone surrogate \\ud800"),
    (b'{@"a": "x\\udc00"}', "lone surrogate \\udc00"),
    (b'{@"a": "\\ud800\\ud800\\udc00"}', "lone surrogate \\ud800 (byte"),
    (b'{@"\\udbff": 1}', "lone surrogate \\udbff"),
    (b'{@"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded: json.loads(bytes) took it
    (b'\xef\xbb\xbf\xef\xbb\xbf{@"a": 1}', "line 1 column 1"),  # one BOM is skipped, not two
    (b'{@"a": 1,}', "not valid JSON at line 1"),
]
#: bodies accepted, and what they read as
ACCEPTED = [
    (b'\xef\xbb\xbf{@"a": 1}', {"a": 1}),  # TF Serving's RapidJSON stream skips a UTF-8 BOM
    (b'{@"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),
    (b'{@"a": "\\\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash: text, no surrogate
    (b'{@"a": "NaN 1e999"}', {"a": "NaN 1e999"}),
    (b'{@"a": [NaN, Infinity, -Infinity]}', {"a": [np.nan, np.inf, -np.inf]}),
    (b'{@"a": [18446744073709551615, -9223372036854775808]}',
     {"a": [18446744073709551615, -9223372036854775808]}),
    (b'{@"a": [18446744073709551616, -9223372036854775809]}',  # past 64 bits: float64
     {"a": [1.8446744073709552e19, -9.223372036854776e18]}),
    (b'{@"a": 1' + b"0" * 40 + b"}", {"a": 1e40}),  # was a 400 with the standard library only
    (b'{@"a": [1e-999, 1.7976931348623157e308]}', {"a": [0.0, 1.7976931348623157e308]}),
]


def with_nan(body: bytes, nan: bool) -> bytes:
    return body.replace(b"@", b'"n": NaN, ' if nan else b"")


def same(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, float) and np.isnan(want):
        return isinstance(got, float) and np.isnan(got)
    return type(got) is type(want) and got == want


@pytest.mark.parametrize("nan", [False, True], ids=["alone", "with-a-NaN"])
@pytest.mark.parametrize("body,words", REFUSED)
def test_json_refused_alike_by_both_parsers(parser: str, body: bytes, words: str,
                                            nan: bool) -> None:
    with pytest.raises(BadRequest) as e:
        jsonio.loads(with_nan(body, nan), "X")
    assert words in e.value.message and e.value.message.endswith("X"), e.value.message
    assert "\n" not in e.value.message and len(e.value.message) < 300


@pytest.mark.parametrize("nan", [False, True], ids=["alone", "with-a-NaN"])
@pytest.mark.parametrize("body,want", ACCEPTED)
def test_json_accepted_alike_by_both_parsers(parser: str, body: bytes, want: Any,
                                             nan: bool) -> None:
    got = jsonio.loads(with_nan(body, nan), "X")
    if nan:
        assert np.isnan(got.pop("n"))
    assert same(got, want), got


ROWS = json.dumps({"instances": np.arange(64 * 784, dtype=np.float64).reshape(64, 784).tolist()})


@pytest.mark.skipif(not jsonfast.available(), reason="pysimdjson is not installed here")
def test_big_bodies_keep_the_rule_on_the_simdjson_path() -> None:
    """A BOM-prefixed batch is read straight into numpy like any other; a number past float64
    in one is the same 400."""
    out = jsonio.loads(jsonio.BOM + ROWS.encode(), "X", jsonfast.TFSERVING)
    assert isinstance(out["instances"], np.ndarray) and out["instances"].shape == (64, 784)
    with pytest.raises(BadRequest, match="number 1e999 is past"):
        jsonio.loads(ROWS.replace("783.0]", "1e999]", 1).encode(), "X", jsonfast.TFSERVING)


# --- D: smaller ones -------------------------------------------------------------------------

BIG = "z" * 1_000_000
ONE_SIG = Signature("one", {"x": TensorSpec("x", 1, (-1, 3))}, {"y": TensorSpec("y", 1, (-1, 3))})


def _refusal(f: Callable[[], Any]) -> str:
    with pytest.raises(BadRequest) as e:
        f()
    return e.value.message


@pytest.mark.parametrize("case", [
    "v2 datatype", "v2 shape", "v2 rank", "v2 binary_data_size", "v2 outputs", "tfs inputs",
    "tfs signature", "examples feature", "output_filter"])
def test_errors_quote_a_client_value_shortly(case: str) -> None:
    """Error replies quoted whole values: 4.5-7 MB bodies for one bad field."""
    calls: Dict[str, Callable[[], Any]] = {
        "v2 datatype": lambda: V2().decode(*v2_body({"inputs": [dict(X, datatype=BIG)]}), Sigs(), CALL),
        "v2 shape": lambda: V2().decode(*v2_body({"inputs": [dict(X, shape=BIG)]}), Sigs(), CALL),
        "v2 rank": lambda: V2().decode(*v2_body({"inputs": [dict(X, shape=[1] * 100_000)]}),
                                       Sigs(), CALL),
        "v2 binary_data_size": lambda: V2().decode(
            *v2_body({"inputs": [dict(X, parameters={"binary_data_size": BIG})]}, b"x"), Sigs(), CALL),
        "v2 outputs": lambda: V2().decode(
            *v2_body({"inputs": [X], "outputs": [{"name": f"{i}{BIG[:1000]}"} for i in range(4000)]}),
            Sigs(), CALL),
        "tfs inputs": lambda: TFServing().decode(
            json.dumps({"inputs": {f"{i}{BIG[:1000]}": [1] for i in range(4000)}}).encode(), {},
            Sigs(), Call("m", "", "predict")),
        "tfs signature": lambda: find_signature({"one": ONE_SIG}, "one", BIG),
        "examples feature": lambda: serialize_examples([{BIG: [None]}], {}),
        "output_filter": lambda: output_names([f"{i}{BIG[:1000]}" for i in range(4000)], ONE_SIG),
    }
    msg = _refusal(calls[case])
    assert len(msg) < 400 and "\n" not in msg, (len(msg), msg[:500])
    if case in ("v2 outputs", "tfs inputs", "output_filter"):
        assert "and 3995 more" in msg


def tfs(doc: Any) -> Any:
    return TFServing().decode(json.dumps(doc).encode(), {}, Sigs(), Call("m", "", "predict"))


def bool_sigs() -> Sigs:
    sigs = Sigs()
    sigs.signatures["b"] = Signature("b", {"x": TensorSpec("x", 10, (-1,))},
                                     {"y": TensorSpec("y", 10, (-1,))})
    return sigs


@pytest.mark.parametrize("decode", [
    lambda: tfs({"instances": [[True, 0.5, 1]]}),
    lambda: tfs({"instances": [[1, 2, 3], [0.5, 0, True]]}),
    lambda: tfs({"inputs": [[0.5, 1, 2], [False, 1, 2]]}),
    lambda: tfs({"signature_name": "two", "inputs": {"a": [[1, 2]], "n": [True, 2]}}),
    lambda: tfs({"signature_name": "two", "instances": [{"a": [1, 2], "n": 1}, {"a": [1, 2], "n": True}]}),
    lambda: V2().decode(*v2_body({"inputs": [dict(X, data=[True, 0.5, 1])]}), Sigs(), CALL),
    lambda: V2().decode(*v2_body({"inputs": [dict(X, data=[[1, 2, False]])],
                                  "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}),
                        Sigs(), CALL),
    lambda: V2().decode(*v2_body({"parameters": {"signature_name": "two"}, "inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "n", "shape": [2], "datatype": "INT32", "data": [2, True]}]}), Sigs(), CALL),
], ids=["tfs-row", "tfs-second-row", "tfs-columns", "tfs-int", "tfs-named-rows", "v2",
        "v2-with-a-true-parameter", "v2-int"])
def test_true_and_false_are_no_numbers_even_among_numbers(parser: str,
                                                           decode: Callable[[], Any]) -> None:
    """[true, 0.5] read as [1.0, 0.5] while [true, false] was refused: both are now."""
    msg = _refusal(decode)
    assert "holds true/false values" in msg, msg


def test_bodies_with_true_elsewhere_keep_their_numbers(parser: str) -> None:
    d = V2().decode(*v2_body({"id": "true or false", "inputs": [dict(X, data=[1, 0, 1])],
                              "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}),
                    Sigs(), CALL)
    assert d.feeds["x"].tolist() == [[1, 0, 1]]
    d = tfs({"signature_name": "two", "instances": [{"a": [1.0, 0.0], "n": 1}]})
    assert d.feeds["a"].tolist() == [[1.0, 0.0]]
    d = V2().decode(*v2_body({"parameters": {"signature_name": "b"}, "inputs": [
        {"name": "x", "shape": [2], "datatype": "BOOL", "data": [True, False]}]}), bool_sigs(), CALL)
    assert d.feeds["x"].tolist() == [True, False]


def test_bool_words_counts_them() -> None:
    for body in [b"", b"true", b'{"a": [true, false, 1]}', b'"untrue"', b"u" * 5000 + b"false"]:
        assert jsonio.bool_words(body) == body.count(b"true") + body.count(b"false")


def test_a_true_among_a_big_batch_is_found(parser: str) -> None:
    rows = np.random.RandomState(3).rand(64, 3).tolist() * 20
    rows[-1][1] = True
    with pytest.raises(BadRequest, match="holds true/false values"):
        tfs({"instances": rows})


@pytest.mark.parametrize("doc,words", [
    ({"inputs": [dict(X, parameters=[1])]}, "input 'x' \"parameters\" must be a JSON object"),
    ({"inputs": [dict(X, parameters="binary")]}, "input 'x' \"parameters\" must be"),
    ({"inputs": [X], "parameters": []}, '"parameters" must be a JSON object'),
    ({"inputs": [X], "parameters": 0}, '"parameters" must be a JSON object'),
    ({"inputs": [X], "outputs": [{"name": "y", "parameters": []}]},
     "output 'y' \"parameters\" must be a JSON object"),
    ({"inputs": [X], "outputs": {}}, '"outputs" must be a list'),
])
def test_v2_parameters_that_are_no_object_are_400_everywhere(doc: Dict[str, Any], words: str) -> None:
    """A top-level "parameters": [1] was a 400, an input's was silently ignored (and [] or 0
    anywhere passed for {})."""
    assert words in v2_refused(doc)


def test_v2_binary_data_size_true_is_no_byte_count() -> None:
    """It read as 1 (bool is an int to Python)."""
    doc = {"parameters": {"signature_name": "b"}, "inputs": [
        {"name": "x", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": True}}]}
    assert "binary_data_size True is no byte count" in v2_refused(doc, b"\x01", sigs=bool_sigs())


@pytest.mark.parametrize("context", [[], [{"c": 1}], 0, None])
def test_examples_context_that_is_no_object_is_400(context: Any) -> None:
    doc = {"signature_name": "cls", "context": context, "examples": [{"x": 1}]}
    with pytest.raises(BadRequest, match='"context" must be an object'):
        TFServing().decode(json.dumps(doc).encode(), {}, Sigs(), Call("m", "", "classify"))


@pytest.mark.parametrize("value,body_len,want", [
    ("12", 100, 12), ("0", 0, 0), ("0012", 12, 12), ("9" * 20, 10 ** 21, int("9" * 20))])
def test_header_length_reads_ascii_digits(value: str, body_len: int, want: int) -> None:
    assert header_length(value, body_len) == want


@pytest.mark.parametrize("value", [
    "\u00b9\u00b2",  # superscripts: isdigit() says yes, int() raised ValueError (a 500)
    "1" * 5000,  # past int()'s 4300-digit limit: ValueError (a 500)
    "0" * 21, "\u0661\u0662", "", " 12", "12 ", "+12", "-1", "1_2", "0x10", "1e2", "13"])
def test_header_length_refuses_anything_else_with_a_400(value: str) -> None:
    with pytest.raises(BadRequest) as e:
        header_length(value, 12)
    assert "Inference-Header-Content-Length" in e.value.message and len(e.value.message) < 300
    if value != "13":  # the one that is a length, in a longer body
        body, _ = v2_body({"inputs": [X]})
        assert "not a length" in v2_refused(body, headers={HEADER: value})


def test_examples_true_false_features_are_int64_not_a_500() -> None:
    """{"feature": true} raised OverflowError (a bool array compared with -2^63): a 500.  TF
    Serving writes true/false as int64 1/0."""
    (a,) = serialize_examples([{"f": [True, False]}], {})
    (b,) = serialize_examples([{"f": [1, 0]}], {})
    assert a == b
    (c,) = serialize_examples([{"f": 2}], {"g": False})
    assert c == serialize_examples([{"f": 2}], {"g": 0})[0]


# --- the JSON path's cost per byte: arrays and objects are capped before parsing ------------


def containers_body(n: int) -> bytes:
    return b'{"instances": [' + b",".join([b"[]"] * (n - 2)) + b"]}"


def test_a_body_of_empty_lists_is_refused_before_any_parser_builds_them(parser: str) -> None:
    body = containers_body(jsonio.MAX_CONTAINERS + 1)  # ~0.8 MB of "[],"
    peak = peak_bytes(lambda: tfs_raw(body))
    message = refused_raw(body)
    assert f"opens {jsonio.MAX_CONTAINERS + 1} JSON arrays or objects" in message, message
    assert peak < 3 * len(body), peak  # a vectorised pass over the bytes, no lists (was 33 B/B)


def test_as_many_containers_as_allowed_are_parsed(parser: str) -> None:
    body = containers_body(jsonio.MAX_CONTAINERS)
    d = tfs_raw(body)  # read whole; its shape is the model's to take or refuse (TF Serving's)
    assert d.feeds["x"].shape == (jsonio.MAX_CONTAINERS - 2, 0)
    jsonio.check_containers(b"[" * (2 * jsonio.MAX_CONTAINERS))  # too short to be looked at


def tfs_raw(body: bytes) -> Any:
    return TFServing().decode(body, {}, Sigs(), Call("m", "", "predict"))


def refused_raw(body: bytes) -> str:
    with pytest.raises(BadRequest) as e:
        tfs_raw(body)
    assert "\n" not in e.value.message and e.value.status == 400
    return e.value.message


def test_string_inputs_hold_at_most_max_strings_elements() -> None:
    from tfserverless.protocol.dtypes import MAX_STRINGS

    n = MAX_STRINGS + 1
    blob = (struct.pack("<I", 0)) * n  # n empty elements: 4 bytes each, all present
    peak = peak_bytes(lambda: V2().decode(*v2_body(bytes_input([n], len(blob)), blob), Sigs(),
                                          CALL))
    assert peak < 2 * len(blob), peak  # the body's own bytes; no element object is made
    assert f"{n} string elements" in v2_refused(bytes_input([n], len(blob)), blob)
    sig = Signature("s", {"s": TensorSpec("s", 7, (-1,))}, {"y": TensorSpec("y", 7, (-1,))})
    from tfserverless.protocol.tfserving import to_array

    with pytest.raises(BadRequest, match="string elements"):
        to_array([""] * n, sig.inputs["s"], "s")


def eas_strings(n: int, element: bytes, dtype: int = 7, tail: bytes = b"") -> bytes:
    """An EAS PredictRequest for signature "str": input "s" of shape [n], n string_val
    elements (then ``tail`` in the ArrayProto), written with the project's own wire writers."""
    array = (varint_bytes(1 << 3) + varint_bytes(dtype)  # dtype (field 1, a varint)
             + tagged(2, tagged(1, varint_bytes(n)))  # array_shape { dim: [n] }
             + tagged(6, element) * n + tail)  # string_val, one field each
    return tagged(1, b"str") + tagged(2, tagged(1, b"s") + tagged(2, array))


def test_eas_string_inputs_hold_at_most_max_strings_elements() -> None:
    """EAS's string_val was held to no limit: MAX_STRINGS + 1 elements were decoded (two-byte
    ones: +43 MB of bytes objects for a 4 MB body)."""
    from tfserverless.protocol.dtypes import MAX_STRINGS

    with pytest.raises(BadRequest) as e:
        EAS().decode(eas_strings(MAX_STRINGS + 1, b""), {}, Sigs(), CALL)
    assert e.value.status == 400 and e.value.message == (
        f"input 's' has more than {MAX_STRINGS} string elements; expected at most {MAX_STRINGS} "
        "in one request")


@pytest.mark.parametrize("dtype", [7, 1])  # DT_STRING; DT_FLOAT, whose values are elsewhere
def test_eas_strings_are_counted_before_any_is_made_and_only_to_the_limit(
        dtype: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before any element object is made; and the count stops past the limit, so the
    rest of the body (up to 64 MB of string fields) is not walked: here it is not even valid."""
    from tfserverless.protocol import dtypes, eas

    limit = 20_000  # MAX_STRINGS, scaled down: tracemalloc slows the walk ~30x
    monkeypatch.setattr(dtypes, "MAX_STRINGS", limit)
    monkeypatch.setattr(eas, "MAX_STRINGS", limit)
    body = eas_strings(limit + 1, b"ab", dtype)
    peak = peak_bytes(lambda: EAS().decode(body, {}, Sigs(), CALL))
    assert peak < len(body) // 4, peak  # no element objects (~35 bytes each), no body copy
    bad = b"\x32\x05ab"  # a string_val of 5 bytes with 2 left in its message
    with pytest.raises(BadRequest, match=f"more than {limit} string elements"):
        EAS().decode(eas_strings(limit + 1, b"ab", dtype, bad), {}, Sigs(), CALL)
    with pytest.raises(BadRequest, match="string_val runs past its message"):
        EAS().decode(eas_strings(limit, b"ab", dtype, bad), {}, Sigs(), CALL)
    assert EAS().decode(eas_strings(3, b"ab"), {}, Sigs(), CALL).feeds["s"].tolist() == [b"ab"] * 3
