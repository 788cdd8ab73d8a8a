"""TF Serving REST codec, fast lane: no TensorFlow, a signature table stands in for the model."""

from __future__ import annotations

import base64
import json
from typing import Any, Dict

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import Call, Signature, TensorSpec
from tfserverless.protocol.examples import serialize_examples
from tfserverless.protocol.jsonio import dumps, loads
from tfserverless.protocol.tfserving import TFServing
from tfserverless.protocol.wire import iter_fields

F, S, I64, I32, B, H = 1, 7, 9, 3, 10, 19
PREDICT_METHOD = "tensorflow/serving/predict"


class Sigs:
    """The ``Signatures`` seam: what a codec needs of a model."""

    default_signature = "one"

    def __init__(self) -> None:
        self.signatures = {
            "one": Signature("one", {"x": TensorSpec("x", F, (-1, 3))},
                             {"y": TensorSpec("y", F, (-1, 3))}),
            "two": Signature("two", {"a": TensorSpec("a", F, (-1, 2)),
                                     "n": TensorSpec("n", I32, (-1,))},
                             {"s": TensorSpec("s", F, (-1,)), "t_bytes": TensorSpec("t_bytes", S, (-1,))}),
            "str": Signature("str", {"s": TensorSpec("s", S, (-1,))}, {"o": TensorSpec("o", S, (-1,))}),
            "cls": Signature("cls", {"inputs": TensorSpec("inputs", S, (-1,))},
                             {"classes": TensorSpec("classes", S, (-1, 2)),
                              "scores": TensorSpec("scores", F, (-1, 2))},
                             "tensorflow/serving/classify"),
            # as tf.saved_model.save writes them: method_name predict on every signature
            "tf2_cls": Signature("tf2_cls", {"inputs": TensorSpec("inputs", S, (-1,))},
                                 {"scores": TensorSpec("scores", F, (-1, 1))}, PREDICT_METHOD),
            "tf2_reg": Signature("tf2_reg", {"ex": TensorSpec("ex", S, (-1,))},
                                 {"outputs": TensorSpec("outputs", F, (-1, 1))}, PREDICT_METHOD),
            "tf2_float": Signature("tf2_float", {"inputs": TensorSpec("inputs", F, (1,))},
                                   {"scores": TensorSpec("scores", F, (1,))}, PREDICT_METHOD),
            "tf2_other": Signature("tf2_other", {"inputs": TensorSpec("inputs", S, (-1,))},
                                   {"scores": TensorSpec("scores", F, (-1,)),
                                    "classes": TensorSpec("classes", S, (-1,)),
                                    "extra": TensorSpec("extra", F, (-1,))}, PREDICT_METHOD),
        }

    def signature(self, name: str) -> Signature:
        if (name or self.default_signature) not in self.signatures:
            raise BadRequest(f"unknown signature_name {name!r}")
        return self.signatures[name or self.default_signature]


CODEC = TFServing()
PREDICT = Call("m", "", "predict")


def decode(doc: Any, call: Call = PREDICT) -> Any:
    return CODEC.decode(json.dumps(doc).encode(), {}, Sigs(), call)


def roundtrip(doc: Dict[str, Any], outputs: Dict[str, np.ndarray], call: Call = PREDICT) -> Any:
    d = decode(doc, call)
    body, headers = CODEC.encode(outputs, d, call)
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_row_format_single_input_and_output() -> None:
    d = decode({"instances": [[1, 2, 3], [4.5, 5, 6]]})
    assert d.sig.name == "one" and d.feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(d.feeds["x"], [[1, 2, 3], [4.5, 5, 6]])
    y = np.array([[0.1, 1 / 3, 2.0], [1e-40, 3.4e38, -0.0]], np.float32)
    got = roundtrip({"instances": [[1, 2, 3], [4, 5, 6]]}, {"y": y})
    assert list(got) == ["predictions"]
    back = np.array(got["predictions"], np.float32)
    assert back.tobytes() == y.tobytes()  # float32 round-trips exactly


def test_row_format_named_inputs_and_several_outputs() -> None:
    doc = {"signature_name": "two", "instances": [{"a": [1, 2], "n": 3}, {"a": [3, 4], "n": 5}]}
    d = decode(doc)
    np.testing.assert_array_equal(d.feeds["n"], [3, 5])
    assert d.feeds["n"].dtype == np.int32
    out = {"s": np.array([1.5, np.nan], np.float32), "t_bytes": np.array([b"\xff", b"ok"], object)}
    body, _ = CODEC.encode(out, d, PREDICT)
    assert body.count(b"NaN") == 1  # written as TF Serving writes it
    got = json.loads(body)
    assert got["predictions"][0] == {"s": 1.5, "t_bytes": {"b64": base64.b64encode(b"\xff").decode()}}
    assert got["predictions"][1]["t_bytes"] == {"b64": base64.b64encode(b"ok").decode()}


def test_columnar_format() -> None:
    got = roundtrip({"inputs": [[1, 2, 3]]}, {"y": np.ones((1, 3), np.float32)})
    assert got == {"outputs": [[1.0, 1.0, 1.0]]}
    d = decode({"signature_name": "two", "inputs": {"a": [[1, 2]], "n": [7]}})
    assert d.feeds["a"].shape == (1, 2)
    body, _ = CODEC.encode({"s": np.zeros(1, np.float32), "t_bytes": np.array([b"x"], object)}, d, PREDICT)
    assert json.loads(body) == {"outputs": {"s": [0.0], "t_bytes": [{"b64": "eA=="}]}}


def test_strings_and_b64() -> None:
    b64 = base64.b64encode(b"\x00\xff").decode()
    d = decode({"signature_name": "str", "instances": ["h\u00e9", {"b64": b64}]})
    assert list(d.feeds["s"]) == ["h\u00e9".encode(), b"\x00\xff"]
    body, _ = CODEC.encode({"o": np.array([b"text", b"\xfe"], object)}, d, PREDICT)
    assert json.loads(body) == {"predictions": ["text", {"b64": "/g=="}]}


@pytest.mark.parametrize("doc,msg", [
    ([1, 2], "must be a JSON object"),
    ({}, 'exactly one of "instances"'),
    ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, "exactly one of"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [[1, 2, 3], [1, 2]]}, "ragged"),
    ({"instances": [["a", "b", "c"]]}, "holds strings"),
    ({"instances": [[True, False, True]]}, "holds true/false"),
    ({"signature_name": "nope", "instances": [[1, 2, 3]]}, "unknown signature_name"),
    ({"signature_name": 3, "instances": [[1, 2, 3]]}, "must be a string"),
    ({"signature_name": "two", "instances": [[1, 2]]}, "expected each instance as an object"),
    ({"signature_name": "two", "instances": [{"a": [1, 2]}]}, "missing input 'n'"),
    ({"signature_name": "two", "instances": [{"a": [1, 2], "n": 1, "z": 0}]}, "unknown input 'z'"),
    ({"signature_name": "two", "inputs": {"a": [[1, 2]], "n": [1.5]}}, "holds numbers"),
    ({"signature_name": "two", "inputs": {"a": [[1, 2]], "n": [2 ** 40]}}, "out of DT_INT32's range"),
    ({"signature_name": "two", "inputs": [[1, 2]]}, 'expected "inputs" as an object'),
    ({"signature_name": "str", "instances": [{"b64": "!!"}]}, "not base64"),
    ({"signature_name": "str", "instances": [3]}, "int values where strings"),
    ({"signature_name": "str", "instances": [{"b64": 1}]}, "dict values where strings"),
    # the rank every protocol allows (numpy's own limit is 64 in numpy 2, 32 before)
    ({"inputs": json.loads("[" * 33 + "1" + "]" * 33)}, "input 'x' has rank over 32"),
    ({"signature_name": "str", "inputs": json.loads("[" * 33 + '"s"' + "]" * 33)}, "rank over 32"),
])
def test_bad_requests_are_400_with_one_line(doc: Any, msg: str) -> None:
    with pytest.raises(BadRequest) as e:
        decode(doc)
    assert msg in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("body", [b"", b"{", b"[1,", b'{"instances": [1e999]}', b"\xff\xfe",
                                  b"[" * 100_000])
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as e:
        CODEC.decode(body, {}, Sigs(), PREDICT)
    assert "\n" not in e.value.message


@pytest.mark.parametrize("doc,shape", [
    ({"instances": [[1, 2]]}, (1, 2)), ({"instances": [1, 2, 3]}, (3,)),
    ({"inputs": 7}, ()), ({"inputs": [[[1, 2, 3]]]}, (1, 1, 3)),
    ({"inputs": json.loads("[" * 32 + "1" + "]" * 32)}, (1,) * 32),
])
def test_shapes_other_than_declared_go_to_the_model(doc: Any, shape: Any) -> None:
    """As TF Serving: ``x`` is declared [-1, 3], but what a tensor's shape means is the
    graph's to say (half_plus_two answers [3] against [-1, 1]); a backend refuses what its
    graph cannot take, in one line."""
    assert decode(doc).feeds["x"].shape == shape


def test_an_integer_past_float32_is_infinity_as_tensorflow_casts_it() -> None:
    """A 41-digit integer for a float input: float32's infinity, as ``tf.cast`` makes it
    (it was refused only for its shape, [1] against [-1, 3], before shapes were the model's)."""
    for body in (b'{"instances": [1' + b"0" * 40 + b"]}", b'{"instances": [[1' + b"0" * 40 + b", 1, 2]]}"):
        x = CODEC.decode(body, {}, Sigs(), PREDICT).feeds["x"]
        assert x.dtype == np.float32 and x.reshape(-1)[0] == np.inf


def test_nan_and_infinity_are_accepted_as_tf_serving_accepts_them() -> None:
    d = CODEC.decode(b'{"instances": [[NaN, Infinity, -Infinity]]}', {}, Sigs(), PREDICT)
    x = d.feeds["x"][0]
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf


def test_row_format_needs_one_row_per_instance() -> None:
    d = decode({"instances": [[1, 2, 3]]})
    with pytest.raises(BadRequest, match="columnar"):
        CODEC.encode({"y": np.ones((2, 3), np.float32)}, d, PREDICT)


def test_classify_builds_examples_and_shapes_results() -> None:
    call = Call("m", "", "classify")
    doc = {"signature_name": "cls", "context": {"c": 1}, "examples": [{"x": [0.5, 1]}, {"s": "a"}]}
    d = decode(doc, call)
    serialized = list(d.feeds["inputs"])
    assert len(serialized) == 2 and serialized[0] == serialize_examples([{"x": [0.5, 1]}], {"c": 1})[0]
    out = {"classes": np.array([[b"a", b"b"], [b"c", b"d"]], object),
           "scores": np.array([[0.75, 0.25], [0.5, 0.5]], np.float32)}
    body, _ = CODEC.encode(out, d, call)
    assert json.loads(body) == {"results": [[["a", 0.75], ["b", 0.25]], [["c", 0.5], ["d", 0.5]]]}
    with pytest.raises(BadRequest, match="not a classify signature"):
        decode({"examples": [{"x": 1}]}, call)
    with pytest.raises(BadRequest, match="not a regress signature"):
        decode({"signature_name": "cls", "examples": [{"x": 1}]}, Call("m", "", "regress"))
    with pytest.raises(BadRequest, match='"examples" must be'):
        decode({"signature_name": "cls", "examples": []}, call)


@pytest.mark.parametrize("verb,sig,ok", [
    ("classify", "tf2_cls", True), ("regress", "tf2_reg", True),
    ("regress", "tf2_cls", False),  # no 'outputs'
    ("classify", "tf2_reg", False),  # neither 'classes' nor 'scores'
    ("classify", "tf2_float", False), ("regress", "tf2_float", False),  # no string input
    ("classify", "tf2_other", False),  # three outputs: TF Serving takes one or two
    ("classify", "str", False),  # a string in, but 'o' out
    ("classify", "two", False),  # two inputs
])
def test_examples_on_predict_signatures_as_tf_serving(verb: str, sig: str, ok: bool) -> None:
    """``tf.saved_model.save`` writes method_name predict on every signature; TF Serving then
    classifies/regresses on a signature of one DT_STRING input (serialized tf.Example) whose
    outputs are what the verb gives (its classifier.cc/regressor.cc checks); else one line."""
    doc = {"signature_name": sig, "examples": [{"x": 2.0}, {"x": 3.0}]}
    if not ok:
        with pytest.raises(BadRequest) as e:
            decode(doc, Call("m", "", verb))
        assert f"signature '{sig}' is not a {verb} signature (method_name " in e.value.message
        assert "one DT_STRING input of serialized tf.Example" in e.value.message
        return
    call = Call("m", "", verb)
    d = decode(doc, call)
    (alias,) = d.feeds
    assert list(d.feeds[alias]) == serialize_examples([{"x": 2.0}, {"x": 3.0}], {})
    name = "scores" if verb == "classify" else "outputs"
    body, _ = CODEC.encode({name: np.array([[3.0], [3.5]], np.float32)}, d, call)
    want = [[["", 3.0]], [["", 3.5]]] if verb == "classify" else [3.0, 3.5]
    assert json.loads(body) == {"results": want}


def test_example_wire_format() -> None:
    (ex,) = serialize_examples([{"f": [1.5, 2], "i": [1, 2], "b": ["x", {"b64": "eQ=="}]}], {})
    (features,) = list(iter_fields(ex))
    entries = {}
    for entry in iter_fields(features.data()):
        parts = {f.number: bytes(f.data()) for f in iter_fields(entry.data())}
        entries[parts[1].decode()] = parts[2]
    kinds = {k: next(iter(iter_fields(v))).number for k, v in entries.items()}
    assert features.number == 1 and kinds == {"f": 2, "i": 3, "b": 1}  # float_list, int64_list, bytes_list


def test_jsonio_writes_non_finite_only_outside_strings() -> None:
    a = np.array([np.nan, 1.0, -np.inf], np.float32)
    out = dumps({"s": "null", "a": a}, [a])
    assert out == b'{"s":"null","a":[NaN,1.0,-Infinity]}'
    assert loads(b'{"a": 1}', "x") == {"a": 1}
