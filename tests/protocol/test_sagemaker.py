"""SageMaker's ``/invocations`` bodies and custom attributes as its TF Serving container reads
them (aws/deep-learning-containers @ e0ecedea, ``tensorflowServing.js``): the examples are that
container's, run under node by a helper reading its source."""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
import tracemalloc
from typing import Callable, List, Tuple

import numpy as np
import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import sagemaker, sagemaker_text
from tfserverless.protocol.dtypes import MAX_STRINGS
from tfserverless.protocol.jsonio import MAX_CONTAINERS, NotJSON, loads
from tfserverless.protocol.sagemaker import (
    V2_JSON,
    Attributes,
    custom_attributes,
    located,
    media_type,
    tfs_json,
    tfs_json_offset,
)
from tfserverless.protocol.sagemaker_text import csv_fields, csv_json


@pytest.mark.parametrize("body, want", [
    (b"1.0", [1.0]),
    (b"1.0\n2.0\n5.0\n", [1.0, 2.0, 5.0]),
    (b"1.0,2.0,5.0", [[1.0, 2.0, 5.0]]),
    (b"1,2\r\n\r\n  3 , 4 \n", [[1, 2], [3, 4]]),  # CRLF, blank lines, spaces around fields
    (b'1.0,hello,"world,earth"', [[1.0, "hello", "world,earth"]]),
    (b'"1.0",x', [[1.0, "x"]]),  # a quoted number is a number
    (b'a,"say ""hi""",c', [["a", 'say "hi"', "c"]]),
    (b"1,2\n3", [[1, 2], 3]),  # widths as the lines have them (TF Serving then says ragged)
    (b".5,+1,01", [[".5", "+1", "01"]]),  # no JSON numbers: strings, as the container has them
    (b"1e5,-0.25E-2", [[1e5, -0.25e-2]]),
    ("\u0661,2".encode(), [["\u0661", 2]]),  # Arabic-Indic one: no JSON number, a string
])
def test_csv_as_the_container_reads_it(body: bytes, want: object) -> None:
    exact = json.loads(csv_fields(body))
    assert exact == {"instances": want}
    quick = csv_json(body)
    try:  # the quick rewrite may leave a field JSON will not read: then the exact one is used
        assert json.loads(quick) == exact
    except json.JSONDecodeError:
        assert body == b".5,+1,01"


def test_numeric_csv_is_rewritten_without_reading_fields() -> None:
    x = np.random.RandomState(0).rand(300, 40)
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in x).encode()
    np.testing.assert_array_equal(np.array(json.loads(csv_json(body))["instances"]), x)
    col = "\n".join(repr(float(v)) for v in x[:, 0]).encode() + b"\n"
    np.testing.assert_array_equal(np.array(json.loads(csv_json(col))["instances"]), x[:, 0])


@pytest.mark.parametrize("body, message", [
    (b"", "empty CSV body"),
    (b" \r\n\n ", "empty CSV body"),
    (b"caf\xe9,1", "not readable"),
    (b"a," * MAX_STRINGS, f"over {MAX_STRINGS} (MAX_STRINGS)"),
])
def test_bad_csv_is_one_line_400(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        csv_json(body)
    assert message in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("rewrite", [csv_json, csv_fields])
@pytest.mark.parametrize("line, words", [
    (b"1,2\n", f"CSV of {MAX_CONTAINERS - 1} lines of several fields is a request of "
                f"{MAX_CONTAINERS + 1} JSON arrays or objects, over {MAX_CONTAINERS}"),
    (b"a,2\r", f"CSV of {MAX_CONTAINERS - 1} lines of several fields"),
])
def test_csv_past_the_parsers_arrays_is_refused_in_csvs_words(
        rewrite: Callable[[bytes], bytes], line: bytes, words: str) -> None:
    """A line of several fields is a JSON array of the request: past ``MAX_CONTAINERS`` the
    parser said 'body opens N JSON arrays or objects' and to send columnar "inputs"."""
    assert rewrite(line * (MAX_CONTAINERS - 2))
    with pytest.raises(BadRequest) as e:
        rewrite(line * (MAX_CONTAINERS - 1))
    assert words in e.value.message and f"fewer lines a request (at most {MAX_CONTAINERS - 2})" \
        in e.value.message
    brackets = b"[{]," * (MAX_CONTAINERS // 2)
    with pytest.raises(BadRequest) as e:
        rewrite(brackets)
    assert f"and {MAX_CONTAINERS} '[' or '{{' in its fields" in e.value.message


@pytest.mark.parametrize("end", [b"\n", b"\r"])  # csv ends a line at a lone \r too
def test_text_fields_are_counted_before_any_is_made(monkeypatch: pytest.MonkeyPatch,
                                                    end: bytes) -> None:
    """A lone \r was not counted: 4M rows of ``a\r`` (8 MiB) were read, 6 s and ~46x the body,
    where the same rows ending in \n were refused at once."""
    def never(*a: object, **k: object) -> None:
        raise AssertionError("csv.reader ran on a body over MAX_STRINGS")
    monkeypatch.setattr(sagemaker_text.csv, "reader", never)
    with pytest.raises(BadRequest) as e:
        csv_fields((b"x" + end) * (MAX_STRINGS + 1))
    assert f"over {MAX_STRINGS} (MAX_STRINGS)" in e.value.message


@pytest.mark.parametrize("body, want", [
    (b'{"instances": [1, 2]}', b'{"instances": [1, 2]}'),  # a TF Serving request: as it is
    (b'{"signature_name": "s", "inputs": {"x": [1]}}', None),
    (b'{"examples": [{"x": 1}]}', None),
    (b'{"x":[1.0]}\n{"x":[2.0]}\n', b'{"instances":[{"x":[1.0]},{"x":[2.0]}]}'),  # JSON lines
    (b"[1,2]\n[3,4]", b'{"instances":[[1,2],[3,4]]}'),
    (b"[1,2,5]", b'{"instances":[[1,2,5]]}'),  # one instance
    (b" [[1,2],[3,4]] ", b'{"instances":[[1,2],[3,4]]}'),  # the instances themselves
    (b'{"x":1}', b'{"instances":[{"x":1}]}'),
    (b"7", b'{"instances":[7]}'),
])
def test_json_as_the_container_reads_it(body: bytes, want: object) -> None:
    assert tfs_json(body) == (body if want is None else want)


@pytest.mark.parametrize("body, where", [
    (b'{"x": [1.0]}\n{"x": ', "at line 2 column 7 (byte 19)"),  # was line 1 column 34 (byte 33)
    (b'[1]\n  \n\n[2]\n[3 x]\n', "at line 5 column 4 (byte 15)"),
    (b"\x00", "at line 1 column 1 (byte 0)"),  # was byte 14: the rewrite's opening
    (b"  [[1], [2] x", "at line 1 column 13 (byte 12)"),
    (b'[1]\n["\xff"]', "not UTF-8 at line 2 column 3 (byte 6)"),
    ("[1]\n[\u00e9 x]".encode(), "at line 2 column 2 (byte 5)"),
    (b"[1]\n[1e999]", "number 1e999 is past float64's range"),
])
def test_json_refusals_name_the_clients_body(body: bytes, where: str) -> None:
    """The parser reads the rewrite (``{"instances":[`` and the lines joined by commas): where
    it broke in that was no place in the body the client sent, nor what it expected."""
    with pytest.raises(NotJSON) as e:
        loads(tfs_json(body), "a JSON object")
    message = located(e.value, body, tfs_json_offset).message
    assert where in message and "expected JSON lines (one instance a line)" in message


def test_rewritten_bytes_map_back_to_the_body() -> None:
    rng = random.Random(27)
    bodies = [bytes(rng.choice(b'{}1x \n\r\t,[]') for _ in range(rng.randint(1, 20)))
              for _ in range(5000)]
    bodies += [b"{}\n" + bytes(rng.choice(b"1 \n\r\t,") for _ in range(rng.randint(1 << 16, 1 << 18)))
               for _ in range(5)]  # across the pieces they are rewritten in
    for body in bodies:
        out, lead, end = tfs_json(body), len(body) - len(body.lstrip()), len(body.rstrip())
        for i in (range(len(out)) if len(out) < 64 else rng.sample(range(len(out)), 2000)):
            at = tfs_json_offset(body, i)
            if lead <= at < end:  # a byte of the body's, or a comma where its line break was
                assert body[at] == out[i] or (out[i] == ord(",") and body[at:at + 1].isspace())


@pytest.mark.parametrize("body, v2", [
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', True),
    (b'{"id": "1", "inputs" : [ {"datatype": "BYTES", "name": "s"}]}', True),
    (b'{"inputs": [{"b64": "aGk="}]}', False),  # TF Serving's columnar strings
    (b'{"inputs": [[1, 2]]}', False),
    (b'{"instances": ["\\"inputs\\": [{\\"name\\": 1}]"]}', False),  # only inside a string
])
def test_a_v2_request_is_told_from_tf_servings(body: bytes, v2: bool) -> None:
    assert bool(V2_JSON.search(body)) is v2


@pytest.mark.parametrize("header, want", [
    ("", Attributes()),
    ("tfs-model-name=half_plus_three,tfs-model-version=2", Attributes("half_plus_three", "2")),
    ("tfs-method=classify,tfs-model-name=m,tfs-model-version=2", Attributes("m", "2", "classify")),
    ("trace=abc, tfs-model-name=m1 ,other=1", Attributes("m1")),  # other keys beside; spaces
    ("tfs-method=regress", Attributes(method="regress")),
    ("tfs-model-name=a=b", Attributes()),  # a value holding '=': dropped, as the container does
])
def test_custom_attributes(header: str, want: Attributes) -> None:
    assert custom_attributes(header) == want


@pytest.mark.parametrize("header, message", [
    ("tfs-model-name=../x", "invalid tfs-model-name '../x'"),
    ("tfs-model-version=x1", "invalid tfs-model-version 'x1'"),
    ("tfs-model-version=\u00b2", "invalid tfs-model-version"),  # not an ASCII digit
    ("tfs-method=explain", "invalid tfs-method 'explain'"),
    ("tfs-method=" + "p" * 5000, "invalid tfs-method"),
])
def test_bad_custom_attributes_are_one_line_400(header: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        custom_attributes(header)
    assert message in e.value.message and "X-Amzn-SageMaker-Custom-Attributes" in e.value.message
    assert len(e.value.message) < 300


def test_media_type_drops_parameters() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type("") == ""


# hostile bodies and headers: time linear in them, memory a few times them --------------------

def _container_csv_text(body: bytes) -> bytes:
    return re.sub(rb"\s*\n\s*", b"\n", body.strip())  # lines trimmed, blank ones gone


def _container_lines(body: bytes) -> bytes:
    return b'{"instances":[' + b",".join(x for x in body.split(b"\n") if x.strip()) + b"]}"


def _container_pairs(header: str) -> List[Tuple[str, str]]:
    return [(k, v) for k, v in (p.split("=", 1) for p in re.findall(r"tfs-[a-z\-]+=[^,]+", header))]


def _elapsed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    with contextlib.suppress(BadRequest):
        f()
    return time.perf_counter() - t0


@pytest.mark.parametrize("body", [
    b"1" + b" " * (128 << 10) + b"1",  # \s*\n\s* tried every space to the end: ~17 s
    b"1," + b"\t\r" * (64 << 10) + b"2",
    b"a" + b" " * (128 << 10) + b"b",
])
def test_csv_whitespace_takes_linear_time(body: bytes) -> None:
    assert _elapsed(lambda: csv_json(body)) < 0.5


def test_attributes_take_linear_time() -> None:
    header = "tfs-" * (16 << 10)  # 64 KiB, MAX_HEADER_BYTES: the regex took 1.2 s
    assert _elapsed(lambda: custom_attributes(header)) < 0.3


@pytest.mark.parametrize("rewrite, body", [
    (csv_json, b"1,1\n" * (MAX_CONTAINERS - 2)),  # re.sub's object per line: 55x the body
    (csv_json, b"1 \n" * (1 << 19)),
    (tfs_json, b"{}\n{}\n" + b"12\n" * (1 << 19)),  # split's object per line: 42x
])
def test_rewrites_take_a_few_times_the_body(rewrite: Callable[[bytes], bytes],
                                            body: bytes) -> None:
    assert _peak(lambda: rewrite(body)) < 5 * len(body)


def test_text_csv_is_written_as_it_is_read() -> None:
    """Strings are an object apiece (the JSON parse after it makes them again): the rewrite
    holds no list of every row's fields nor of their JSON (95x the body before; now 27x at
    192 KiB, 13x at 1 MiB: what parsing JSON strings takes too, up to ~30x)."""
    body = b"ab\n" * (1 << 16)
    assert _peak(lambda: csv_fields(body)) < 32 * len(body)


def _peak(run: Callable[[], object]) -> int:
    """Bytes ``run`` held at its peak (tracemalloc)."""
    tracemalloc.start()
    try:
        run()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def test_rewrites_are_the_containers_on_random_bodies() -> None:
    rng = random.Random(27)
    for _ in range(20000):
        body = bytes(rng.choice(b"{}1 \n\r\t\x0b\x0c,") for _ in range(rng.randint(1, 12)))
        if body.strip():
            assert sagemaker_text.csv_text(body) == _container_csv_text(body), body
        lines = b"{}\n{}\n" + body
        assert tfs_json(lines) == _container_lines(lines), lines
    for _ in range(20):  # across the pieces they are rewritten in
        body = bytes(rng.choice(b"1 \n\r\t,") for _ in range(rng.randint(1 << 16, 1 << 18)))
        assert sagemaker_text.csv_text(body) == _container_csv_text(body)
        lines = b"{}\n{}\n" + body
        assert tfs_json(lines) == _container_lines(lines)


def test_attributes_are_the_containers_on_random_headers() -> None:
    rng = random.Random(27)
    words = ["tfs-", "t", "f", "s", "-", "a", "=", ",", " ", "X", "tfs-a=1"]
    for _ in range(50000):
        header = "".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        assert list(sagemaker._pairs(header)) == _container_pairs(header), header


@pytest.mark.parametrize("body, want", [
    (b"1,\r2", [[1, ""], 2]),  # a lone \r ends a line for csv (JSON would read a space)
    (b"1\r,2", [1, ["", 2]]),
    (b"1,\x0b2\x0c", [[1, 2]]),  # spaces JSON has no room for, around a number
    ("1,\u00a02".encode(), [[1, 2]]),
])
def test_csv_whitespace_is_csvs(body: bytes, want: object) -> None:
    assert json.loads(csv_fields(body)) == {"instances": want}
    assert json.loads(csv_json(body)) == {"instances": want}


def test_quick_csv_reads_as_field_by_field_on_random_bodies() -> None:
    rng = random.Random(27)
    for _ in range(100000):
        body = bytes(rng.choice(b"0123456789-+.eE,\n \r\t\x0b") for _ in range(rng.randint(1, 10)))
        try:
            quick = json.loads(csv_json(body))
        except (BadRequest, ValueError):
            continue
        assert quick == json.loads(csv_fields(body)), body
