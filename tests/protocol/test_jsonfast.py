"""jsonfast: a big numeric array read by simdjson must be exactly what orjson + numpy make of
the same text (dtype, shape, every bit), and anything else must go back to the ordinary parse
(None), so that answers and error messages never depend on which parser ran."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import Call, Signature, TensorSpec, jsonfast
from tfserverless.protocol.jsonio import loads
from tfserverless.protocol.tfserving import TFServing
from tfserverless.protocol.v2 import V2

pytestmark = pytest.mark.skipif(not jsonfast.available(), reason="pysimdjson is not installed")

F, S, I64, I32, D = 1, 7, 9, 3, 2
HARD = ["0", "-0", "-0.0", "0.0", "1", "-1", "1e5", "1E-7", "-2.5e+10", "5e-324", "4.9e-324",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308", "1e-400",
        "9007199254740993", "9007199254740993.0", "0.1", "0.30000000000000004", "16777217",
        "3.4028235e38", "3.4028236e38", "1.401298464324817e-45", "0.3790985345840454",
        "123456789012345678", "-9223372036854775808", "9223372036854775807", "-1e-400", "1e23",
        "0.1000000000000000055511151231257827", "8.98846567431158e307", "2.4703282292062328e-324",
        "-2.4703282292062327e-324", "7.038531e-26", "1.00000005960464477550"]


def numbers(n: int, seed: int) -> List[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rnd.random()
        if kind < 0.3:
            out.append(repr(rnd.uniform(-1e3, 1e3)))
        elif kind < 0.5:
            out.append(str(np.float32(rnd.gauss(0, 1) * 10 ** rnd.randint(-40, 38))))
        elif kind < 0.6:
            out.append(str(rnd.randint(-2 ** 63, 2 ** 63 - 1)))
        elif kind < 0.7:
            out.append(f"{rnd.random():.{rnd.randint(1, 25)}e}")
        else:
            out.append(rnd.choice(HARD))
    return out


def array_text(rows: List[List[str]], sep: str = ", ", row_sep: str = ", ") -> str:
    return "[" + row_sep.join("[" + sep.join(r) + "]" for r in rows) + "]"


def same(fast: Any, ordinary: Any) -> None:
    """``fast`` is ``ordinary`` with some lists as the arrays numpy makes of them."""
    if isinstance(fast, np.ndarray):
        want = np.array(ordinary)
        assert fast.dtype == want.dtype and fast.shape == want.shape
        assert fast.tobytes() == want.tobytes()  # every bit, -0.0 and all
    elif isinstance(fast, dict):
        assert isinstance(ordinary, dict) and list(fast) == list(ordinary)
        for k in fast:
            same(fast[k], ordinary[k])
    elif isinstance(fast, list):
        assert isinstance(ordinary, list) and len(fast) == len(ordinary)
        for a, b in zip(fast, ordinary):
            same(a, b)
    else:
        assert type(fast) is type(ordinary) and fast == ordinary


def check(body: bytes, spec: jsonfast.Spec) -> Dict[str, Any]:
    fast = jsonfast.loads(body, spec)
    assert fast is not None, "expected the fast path"
    same(fast, loads(body, "x"))
    return fast


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sep,row_sep", [(", ", ", "), (",", ","), (" ,\n\t", " ,\r\n ")])
def test_numbers_read_exactly_as_orjson_and_numpy_read_them(seed: int, sep: str, row_sep: str) -> None:
    rows = [numbers(64, seed * 100 + i) for i in range(80)]
    body = ('{"signature_name": "s", "instances": ' + array_text(rows, sep, row_sep) + "}").encode()
    assert len(body) > jsonfast.MIN_BYTES
    out = check(body, jsonfast.TFSERVING)
    assert isinstance(out["instances"], np.ndarray) and out["instances"].shape == (80, 64)


def test_a_big_integer_among_floats_is_the_float_numpy_makes_of_it() -> None:
    check(f'{{"instances": [[{ROW[:-5]}, 9223372036854775808], {MANY}]}}'.encode(),
          jsonfast.TFSERVING)


def test_integers_come_as_int64_and_deeper_arrays_keep_their_shape() -> None:
    ints = [[[str(random.Random(i * 7 + j).randint(-10 ** 12, 10 ** 12)) for _ in range(32)]
             for j in range(16)] for i in range(16)]
    text = "[" + ", ".join(array_text(block) for block in ints) + "]"
    out = check(('{"instances": ' + text + "}").encode(), jsonfast.TFSERVING)
    assert out["instances"].dtype == np.int64 and out["instances"].shape == (16, 16, 32)


def test_columnar_inputs_and_v2_bodies_keep_everything_else_as_lists() -> None:
    big = array_text([numbers(64, i) for i in range(80)])
    body = ('{"inputs": {"a": ' + big + ', "b": [1, 2, 3], "s": ["x]", "y"], "n": null}}').encode()
    out = check(body, jsonfast.TFSERVING)
    assert isinstance(out["inputs"]["a"], np.ndarray) and out["inputs"]["b"] == [1, 2, 3]
    flat = "[" + ", ".join(numbers(5120, 9)) + "]"
    body = ('{"id": "r1", "parameters": {"binary_data_output": true, "l": [[1], []]}, "inputs": ['
            '{"name": "x", "shape": [80, 64], "datatype": "FP64", "data": ' + flat + '}, '
            '{"name": "k", "shape": [2], "datatype": "INT64", "data": [1, 2]}], '
            '"outputs": [{"name": "y", "parameters": {"binary_data": false}}]}').encode()
    out = check(body, jsonfast.V2)
    assert isinstance(out["inputs"][0]["data"], np.ndarray) and out["inputs"][0]["shape"] == [80, 64]
    assert out["inputs"][1]["data"] == [1, 2]


ROW = ", ".join(["0.5"] * 64)
INT_ROW = ", ".join(["3"] * 64)
MANY = ", ".join([f"[{ROW}]"] * 300)  # over MIN_BYTES


@pytest.mark.parametrize("body", [
    b'{"instances": [[0.5, 1.5]]}',  # small: the ordinary parse is as quick
    b"\xef\xbb\xbf" + f'{{"instances": [{MANY}]}}'.encode(),  # simdjson skips a BOM
    f'{{"instances": [{MANY}], "instances": [[1]]}}'.encode(),  # repeated key: last one wins
    f'{{"signature_name": "a", "signature_name": "b", "instances": [{MANY}]}}'.encode(),
    f'{{"instances": [{MANY}, [{ROW}, 1.5]]}}'.encode(),  # ragged
    f'{{"instances": [[{ROW}, [1.5]], {MANY}]}}'.encode(),  # ragged, deeper
    f'{{"instances": [[{ROW[:-5]}, [0.5]], {MANY}]}}'.encode(),  # nesting hidden: same count
    f'{{"instances": [[{ROW[:-5]}, true], {MANY}]}}'.encode(),
    f'{{"instances": [[{ROW[:-5]}, null], {MANY}]}}'.encode(),
    f'{{"instances": [[{ROW[:-5]}, "0.5"], {MANY}]}}'.encode(),
    f'{{"instances": [[{INT_ROW[:-3]}, 9223372036854775808], [{INT_ROW}]]}}'.encode(),  # past int64
    f'{{"instances": [[{ROW[:-5]}, NaN], {MANY}]}}'.encode(),
    f'{{"instances": [{MANY},]}}'.encode(),
    f'{{"instances": [{MANY}]}} x'.encode(),
    f'{{"signature_name": "a[b", "instances": [{MANY}]}}'.encode(),  # a '[' in a string
    f'[{MANY}]'.encode(),
    f'{{"a\\u0000b": 1, "instances": [{MANY}]}}'.encode(),  # simdjson cannot look that key up
    ('{"instances": [{"b64": "' + "QUJD" * 30000 + '"}]}').encode(),  # the bulk is a string
    ('{"instances": [' + ", ".join(["[0.5, 0.5]"] * 20000) + "]}").encode(),  # narrow rows
    ('{"inputs": [' + ", ".join(["1"] * 5000) + '], "outputs": [' + ", ".join(['"a"'] * 5000)
     + "]}").encode(),  # a big list outside the arrays
])
def test_anything_else_goes_back_to_the_ordinary_parse(body: bytes) -> None:
    assert jsonfast.loads(body, jsonfast.TFSERVING) is None


@pytest.mark.parametrize("spec,text", [
    (jsonfast.TFSERVING, '{{"inputs": {{"a\\u0000": 1, "x": [{rows}]}}}}'),
    (jsonfast.V2, '{{"inputs": [{{"name": "x", "a\\u0000": 1, "data": [{rows}]}}]}}'),
])
def test_a_key_simdjson_cannot_look_up_goes_back_one_level_down_too(spec: jsonfast.Spec,
                                                                     text: str) -> None:
    assert jsonfast.loads(text.format(rows=MANY).replace("\\u0000", "x").encode(), spec) is not None
    assert jsonfast.loads(text.format(rows=MANY).encode(), spec) is None


def test_the_bodies_that_go_back_are_big_enough_to_have_gone_fast() -> None:
    assert jsonfast.loads(f'{{"instances": [{MANY}]}}'.encode(), jsonfast.TFSERVING) is not None


def test_kept_parsers_serve_again_after_a_body_that_went_back_and_stay_few() -> None:
    bad = f'{{"instances": [{MANY}, [{ROW}, 1.5]]}}'.encode()
    good = f'{{"instances": [{MANY}]}}'.encode()
    for _ in range(3):
        assert jsonfast.loads(bad, jsonfast.TFSERVING) is None
        assert jsonfast.loads(good, jsonfast.TFSERVING) is not None
    with ThreadPoolExecutor(8) as pool:
        assert all(d is not None for d in pool.map(
            lambda b: jsonfast.loads(b, jsonfast.TFSERVING), [good] * 64))
    assert 1 <= len(jsonfast._idle) <= jsonfast.KEEP


class Sigs:
    default_signature = "f"

    def __init__(self) -> None:
        self.signatures = {
            n: Signature(n, {"x": TensorSpec("x", dt, (-1, 64))}, {"y": TensorSpec("y", F, (-1,))})
            for n, dt in (("f", F), ("d", D), ("i", I32), ("l", I64), ("s", S))}

    def signature(self, name: str) -> Signature:
        if (name or self.default_signature) not in self.signatures:
            raise BadRequest(f"unknown signature_name {name!r}")
        return self.signatures[name or self.default_signature]


def decoded(codec: Any, body: bytes) -> Any:
    try:
        d = codec.decode(body, {}, Sigs(), Call("m", "", "predict"))
    except BadRequest as e:
        return e.message
    return {k: (v.dtype, v.shape, v.tobytes()) for k, v in d.feeds.items()}


INTS = ", ".join([f"[{INT_ROW}]"] * 400)
BIG = ", ".join([f"[{', '.join(['3000000000'] * 64)}]"] * 100)


@pytest.mark.parametrize("sig", ["f", "d", "i", "l", "s"])
@pytest.mark.parametrize("rows", [MANY, INTS, BIG, f"{MANY}, [{ROW}, 1.5]"])
def test_requests_decode_the_same_with_or_without_simdjson(
        sig: str, rows: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [(TFServing(), f'{{"signature_name": "{sig}", "instances": [{rows}]}}'.encode()),
              (TFServing(), f'{{"signature_name": "{sig}", "inputs": {{"x": [{rows}]}}}}'.encode())]
    flat = rows.replace("[", "").replace("]", "")
    count = flat.count(",") + 1
    dt = {"f": "FP32", "d": "FP64", "i": "INT32", "l": "INT64", "s": "BYTES"}[sig]
    bodies.append((V2(), json.dumps({"parameters": {"signature_name": sig}, "inputs": [
        {"name": "x", "shape": [count // 64, 64], "datatype": dt, "data": "@"}]}).replace(
        '"@"', f"[{flat}]").encode()))
    for codec, body in bodies:
        spec = jsonfast.V2 if isinstance(codec, V2) else jsonfast.TFSERVING
        ragged = rows.endswith("1.5]") and spec is jsonfast.TFSERVING  # V2's data is flat
        assert (jsonfast.loads(body, spec) is None) == ragged, "fast path"
    with_fast = [decoded(c, b) for c, b in bodies]
    monkeypatch.setattr(jsonfast, "simdjson", None)
    assert with_fast == [decoded(c, b) for c, b in bodies]
