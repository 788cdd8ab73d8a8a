"""The V2 gRPC codec (``ModelInfer``) against protobuf's own generated classes: requests built
as ``tritonclient.grpc`` builds them (raw_input_contents) and with typed contents, for every
datatype, decode to the right arrays; replies parse and read back as ``InferResult.as_numpy``
reads them; every client mistake is one line of 400, worded as the HTTP V2 path words it."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfserverless.errors import BadRequest
from tfserverless.protocol import Call, Signature, TensorSpec
from tfserverless.protocol.dtypes import BY_V2, DTYPES, F_INT, F_INT64, DType
from tfserverless.protocol.v2_grpc import INFER_REQUEST, V2Grpc, encode_infer_response, read_model

from .test_eas import SETTINGS, arrays

CALL = Call("m", "3")
NP = {"FP32": "float32", "FP64": "float64", "INT32": "int32", "INT64": "int64", "INT8": "int8",
      "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16", "UINT32": "uint32",
      "UINT64": "uint64", "BOOL": "bool", "FP16": "float16", "BYTES": "object"}
TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
         "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
         "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
         "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
#: rows the dtype table may not have yet (TF's DT_UINT32/DT_UINT64): added for the tests
#: that need them, as the TF Serving codec's table adds them
UINT_ROWS = {"UINT32": DType(22, "DT_UINT32", "uint32", F_INT, "UINT32"),
             "UINT64": DType(23, "DT_UINT64", "uint64", F_INT64, "UINT64")}


class Sigs:
    """The ``Signatures`` seam: one signature per datatype (named by it, one input of that
    name and datatype, any shape), and ``two``: two inputs and two outputs."""

    default_signature = "two"

    def __init__(self) -> None:
        self.signatures = {
            dt.v2.lower(): Signature(dt.v2.lower(), {dt.v2.lower(): TensorSpec(dt.v2.lower(), dt.code, None)},
                                     {"y": TensorSpec("y", 1, None)}) for dt in BY_V2.values()}
        self.signatures.update({
            "two": Signature("two", {"a": TensorSpec("a", 1, (-1, 2)), "s": TensorSpec("s", 7, (-1,))},
                             {"p": TensorSpec("p", 1, (-1,)), "q": TensorSpec("q", 7, (-1,))}),
        })

    def signature(self, name: str) -> Signature:
        if (name or self.default_signature) not in self.signatures:
            raise BadRequest(f"unknown signature_name {name!r}")
        return self.signatures[name or self.default_signature]


def sample(datatype: str, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Values of ``datatype`` spanning its range (extremes included)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    dt = np.dtype(NP[datatype])
    if dt.kind == "O":
        flat = np.array([bytes(rng.integers(0, 256, i % 5).astype(np.uint8)) for i in range(n)],
                        dtype=object)
    elif dt.kind == "b":
        flat = rng.random(n) < 0.5
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = np.concatenate([np.array([info.min, info.max], dt),
                               rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)])[:n]
    else:
        flat = np.concatenate([[np.finfo(dt).max, -0.0], rng.standard_normal(n)])[:n].astype(dt)
    return flat.reshape(shape)


def raw_bytes(a: np.ndarray) -> bytes:
    """An input's raw content as tritonclient.grpc writes it (``serialize_byte_tensor`` for
    BYTES, ``tobytes`` otherwise)."""
    if a.dtype == object:
        return b"".join(struct.pack("<I", len(v)) + v for v in a.reshape(-1))
    return a.tobytes()


def set_param(holder: Any, key: str, value: Any) -> None:
    """As tritonclient.grpc sets a parameter from a Python value."""
    p = holder[key]
    kind = {str: "string_param", bool: "bool_param", int: "int64_param", float: "double_param"}
    setattr(p, kind[type(value)], value)


def infer_request(pb: ModuleType, inputs: Sequence[Tuple[str, str, np.ndarray]], *,
                  raw: bool = True, outputs: Sequence[Tuple[str, Dict[str, Any]]] = (),
                  params: Optional[Dict[str, Any]] = None, request_id: str = "",
                  model: str = "m", version: str = "") -> bytes:
    """A serialized ModelInferRequest: raw as tritonclient.grpc's ``_get_inference_request``
    builds it, else every input's values in its typed contents field."""
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, datatype, a in inputs:
        t = req.inputs.add(name=name, datatype=datatype, shape=list(a.shape))
        if raw:
            req.raw_input_contents.append(raw_bytes(a))
        else:
            getattr(t.contents, TYPED[datatype]).extend(a.reshape(-1).tolist())
    for name, op in outputs:
        o = req.outputs.add(name=name)
        for k, v in op.items():
            set_param(o.parameters, k, v)
    for k, v in (params or {}).items():
        set_param(req.parameters, k, v)
    return bytes(req.SerializeToString())


def decode(body: bytes, call: Call = CALL) -> Any:
    return V2Grpc().decode(body, {}, Sigs(), call)


def refused(body: bytes) -> str:
    with pytest.raises(BadRequest) as e:
        decode(body)
    assert "\n" not in e.value.message and e.value.status == 400
    return e.value.message


def as_numpy(pb: ModuleType, body: bytes) -> Dict[str, np.ndarray]:
    """A ModelInferResponse's outputs read as tritonclient.grpc's ``InferResult.as_numpy``
    reads them (raw_output_contents by output index), or from typed contents."""
    resp = pb.ModelInferResponse.FromString(body)
    out = {}
    for i, o in enumerate(resp.outputs):
        dt = np.dtype(NP[o.datatype])
        if i < len(resp.raw_output_contents):
            raw = resp.raw_output_contents[i]
            if o.datatype == "BYTES":
                vals, pos = [], 0
                while pos < len(raw):
                    (n,) = struct.unpack_from("<I", raw, pos)
                    vals.append(raw[pos + 4:pos + 4 + n])
                    pos += 4 + n
                a = np.array(vals, dtype=object)
            else:
                a = np.frombuffer(raw, dt.newbyteorder("<"))
        else:
            a = np.array(list(getattr(o.contents, TYPED[o.datatype])), dtype=dt)
        out[o.name] = a.reshape(list(o.shape))
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and \
        (a.tolist() == b.tolist() if a.dtype == object else
         np.array_equal(a, b) or (a.dtype.kind == "f" and a.shape == b.shape
                                  and bool(np.allclose(a, b, rtol=0, atol=0, equal_nan=True))))


DATATYPES = sorted(BY_V2)
SHAPES = [(2, 3), (), (0, 4)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("datatype,raw", [(d, r) for d in DATATYPES for r in (True, False)
                                          if r or d in TYPED])  # FP16: raw only
def test_every_datatype_decodes(pb: ModuleType, datatype: str, raw: bool,
                                shape: Tuple[int, ...]) -> None:
    a = sample(datatype, shape)
    body = infer_request(pb, [(datatype.lower(), datatype, a)], raw=raw,
                         params={"signature_name": datatype.lower()})
    d = decode(body)
    assert same(d.feeds[datatype.lower()], a)
    assert d.outputs == ["y"] and d.sig.name == datatype.lower()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", ["UINT32", "UINT64"])
def test_unsigned_32_and_64_bit_decode_once_the_table_has_them(
        pb: ModuleType, monkeypatch: Any, datatype: str, raw: bool) -> None:
    row = UINT_ROWS[datatype]
    monkeypatch.setitem(BY_V2, datatype, BY_V2.get(datatype, row))
    monkeypatch.setitem(DTYPES, row.code, DTYPES.get(row.code, row))
    a = sample(datatype, (3, 2))
    assert int(a.max()) == np.iinfo(a.dtype).max  # 2**64 - 1: past int64
    d = decode(infer_request(pb, [(datatype.lower(), datatype, a)], raw=raw,
                             params={"signature_name": datatype.lower()}))
    assert same(d.feeds[datatype.lower()], a)


def test_a_datatype_the_table_lacks_is_refused_naming_the_ones_it_has(pb: ModuleType) -> None:
    req = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(
        name="a", datatype="BF16", shape=[1, 2])], raw_input_contents=[b"\0" * 4])
    msg = refused(req.SerializeToString())
    assert msg.startswith("input 'a' has datatype 'BF16'; expected one of FP32, FP64, INT32")


def test_raw_numeric_inputs_are_views_of_the_body(pb: ModuleType) -> None:
    a = np.arange(4000, dtype=np.float32).reshape(-1, 2)
    body = infer_request(pb, [("a", "FP32", a), ("s", "BYTES", np.array([b"x"], dtype=object))])
    feed = decode(body).feeds["a"]
    assert not feed.flags.owndata and not feed.flags.writeable and same(feed, a)
    typed = decode(infer_request(pb, [("a", "FP32", a), ("s", "BYTES", np.array([b"x"], object))],
                                 raw=False)).feeds["a"]
    assert not typed.flags.owndata and same(typed, a)  # one packed fp32 field: a view too


def test_inputs_mixing_typed_and_raw_take_raw_by_input_index(pb: ModuleType) -> None:
    req = pb.ModelInferRequest()
    req.inputs.add(name="a", datatype="FP32", shape=[1, 2])
    req.raw_input_contents.append(np.array([1.5, 2.5], np.float32).tobytes())
    s = req.inputs.add(name="s", datatype="BYTES", shape=[2])
    s.contents.bytes_contents.extend([b"hi", b""])
    d = decode(req.SerializeToString())
    assert same(d.feeds["a"], np.array([[1.5, 2.5]], np.float32))
    assert d.feeds["s"].tolist() == [b"hi", b""]


def two(pb: ModuleType, **kw: Any) -> bytes:
    return infer_request(pb, [("a", "FP32", sample("FP32", (1, 2))),
                              ("s", "BYTES", sample("BYTES", (1,)))], **kw)


def test_requested_outputs_parameters_and_id_reach_the_reply(pb: ModuleType) -> None:
    d = decode(two(pb, outputs=[("q", {"custom": 7})], request_id="req-1",
                   params={"priority": 3, "timeout": 5, "flag": True, "ratio": 0.5}))
    assert d.outputs == ["q"]
    assert d.form.id == "req-1" and d.form.outputs == {"q": {"custom": 7}} and d.form.raw
    body, headers = V2Grpc().encode({"q": np.array([b"x", b"yz"], object)}, d, CALL)
    assert headers == {"Content-Type": "application/grpc"}
    resp = pb.ModelInferResponse.FromString(body)
    assert (resp.model_name, resp.model_version, resp.id) == ("m", "3", "req-1")
    assert as_numpy(pb, body)["q"].tolist() == [b"x", b"yz"]
    unversioned = V2Grpc().encode({"q": np.array([b"x"], object)}, d, Call("m", ""))[0]
    assert pb.ModelInferResponse.FromString(unversioned).model_version == "1"  # as HTTP V2's


def test_all_outputs_by_default_in_name_order(pb: ModuleType) -> None:
    d = decode(two(pb))
    assert d.outputs == ["p", "q"]
    outs = {"p": np.array([1.0, 2.0], np.float32), "q": np.array(["é", "b"], dtype=object)}
    body = V2Grpc().encode(outs, d, CALL)[0]
    got = as_numpy(pb, body)
    assert list(got) == ["p", "q"] and same(got["p"], outs["p"])
    assert got["q"].tolist() == ["é".encode(), b"b"]  # str elements as UTF-8, as over HTTP


@pytest.mark.parametrize("params,outputs,typed", [
    ({"binary_data_output": False}, [], True),
    ({}, [("p", {"binary_data": False}), ("q", {"binary_data": False})], True),
    ({"binary_data_output": False}, [("p", {}), ("q", {"binary_data": True})], False),
    ({}, [("p", {"binary_data": False}), ("q", {})], False),  # one raw: all raw
    ({"binary_data_output": "no"}, [], False),  # not a bool: as over HTTP, not false
])
def test_typed_contents_replies_when_no_output_is_binary(
        pb: ModuleType, params: Dict[str, Any], outputs: List[Any], typed: bool) -> None:
    d = decode(two(pb, params=params, outputs=outputs))
    assert d.form.raw is not typed
    outs = {"p": np.array([1.0, -2.5], np.float32), "q": np.array([b"a", b""], dtype=object)}
    body = V2Grpc().encode(outs, d, CALL)[0]
    resp = pb.ModelInferResponse.FromString(body)
    assert len(resp.raw_output_contents) == (0 if typed else 2)
    got = as_numpy(pb, body)
    assert same(got["p"], outs["p"]) and got["q"].tolist() == [b"a", b""]


def test_an_output_no_contents_field_carries_makes_the_reply_raw(pb: ModuleType) -> None:
    outs = {"p": np.array([1.0], np.float16), "q": np.array([b"a"], dtype=object)}
    body = encode_infer_response(outs, ["p", "q"], model="m", version="1", raw=False)
    resp = pb.ModelInferResponse.FromString(body)
    assert len(resp.raw_output_contents) == 2 and same(as_numpy(pb, body)["p"], outs["p"])


@SETTINGS
@given(outs=st.lists(arrays(), min_size=1, max_size=4), raw=st.booleans())
def test_replies_parse_with_protobuf_and_read_back(pb: ModuleType, outs: List[np.ndarray],
                                                   raw: bool) -> None:
    named = {f"o{i}": a for i, a in enumerate(outs)}
    body = encode_infer_response(named, sorted(named), model="m", version="7", request_id="x",
                                 raw=raw)
    got = as_numpy(pb, body)
    assert list(got) == sorted(named)
    for k, a in named.items():
        assert same(got[k], a if a.dtype != object else a.astype(object)), k


def test_read_model_reads_fields_1_and_2_as_protobuf_does(pb: ModuleType) -> None:
    body = two(pb, model="first", version="9")
    assert read_model(body) == ("first", "9")
    later = body + pb.ModelInferRequest(model_name="second").SerializeToString()
    assert read_model(later) == ("second", "9")  # the last occurrence wins
    assert read_model(b"") == ("", "")
    with pytest.raises(BadRequest, match=r"malformed protobuf body: .*ModelInferRequest"):
        read_model(b"\x0a\x05ab")
    with pytest.raises(BadRequest, match="model_name is not valid UTF-8"):
        read_model(b"\x0a\x01\xff")


def shaped(pb: ModuleType, datatype: str, shape: List[int], raw: Optional[bytes] = None,
           **contents: Any) -> bytes:
    sig = pb.InferParameter(string_param=datatype.lower())
    req = pb.ModelInferRequest(parameters={"signature_name": sig})
    t = req.inputs.add(name=datatype.lower(), datatype=datatype, shape=shape)
    for k, v in contents.items():
        getattr(t.contents, k).extend(v)
    if raw is not None:
        req.raw_input_contents.append(raw)
    return bytes(req.SerializeToString())


@pytest.mark.parametrize("make,expected", [
    (lambda pb: shaped(pb, "FP32", [2, 2], b"\0" * 12),
     "input 'fp32' has 12 bytes in raw_input_contents; shape [2, 2] of FP32 needs 16"),
    (lambda pb: shaped(pb, "BYTES", [3], b"\1\0\0\0a"),
     "input 'bytes' has 5 bytes in raw_input_contents; shape [3] of BYTES needs at least 12"),
    (lambda pb: shaped(pb, "BYTES", [1], b"\x09\0\0\0abc"), "input 'bytes' element 0 of 9 bytes"),
    (lambda pb: shaped(pb, "BYTES", [1], b"\1\0\0\0abc"), "input 'bytes' has 2 bytes after its 1"),
    (lambda pb: shaped(pb, "FP32", [2], fp32_contents=[1.0]),
     "input 'fp32' has 1 values in fp32_contents but shape [2] needs 2"),
    (lambda pb: shaped(pb, "INT64", [1], int_contents=[1]),
     "input 'int64' has 0 values in int64_contents but shape [1] needs 1"),
    (lambda pb: shaped(pb, "INT64", [1], int64_contents=[1], fp64_contents=[2.0]),
     "input 'int64' of datatype INT64 carries values in fp64_contents; expected them in "
     "int64_contents"),
    (lambda pb: shaped(pb, "FP16", [1], int_contents=[15360]),
     "input 'fp16' of datatype FP16 has values in int_contents; expected them in "
     "raw_input_contents (InferTensorContents has no field for FP16)"),
    (lambda pb: shaped(pb, "INT8", [2], int_contents=[1, 300]),
     "input 'int8' has values out of DT_INT8's range [-128, 127]"),
    (lambda pb: shaped(pb, "UINT16", [1], uint_contents=[70000]),
     "input 'uint16' has values out of DT_UINT16's range [0, 65535]"),
    (lambda pb: shaped(pb, "FP32", [1]),
     "input 'fp32' has neither contents nor raw_input_contents; expected its 1 values in "
     "fp32_contents"),
    (lambda pb: shaped(pb, "FP32", [1], b"\0" * 4, fp32_contents=[1.0]),
     "input 'fp32' has both contents and raw_input_contents; expected its data in one of them"),
    (lambda pb: shaped(pb, "FP32", [-1], b""), "input 'fp32' has dimension -1 in shape [-1]"),
    (lambda pb: shaped(pb, "FP32", [1] * 33, b"\0" * 4), "input 'fp32' has rank over 32"),
    (lambda pb: shaped(pb, "FP32", [1 << 30] * 3, b""), "over 1099511627776 elements"),
    (lambda pb: shaped(pb, "FP32", [1], b"\0" * 4) + b"\x3a\x00",
     "the request holds 2 raw_input_contents for 1 inputs; expected one per input at most"),
    (lambda pb: shaped(pb, "FP32", [1], b"\0" * 4) + b"\x22\x12\x0a\x0esignature_name\x12\x00",
     '"parameters" "signature_name" must be a string'),
    (lambda pb: two(pb, params={"signature_name": 3}), '"parameters" "signature_name" must be'),
    (lambda pb: two(pb, outputs=[("p", {}), ("zz", {})]),
     "unknown output 'zz' for signature 'two'; expected 'p', 'q'"),
    (lambda pb: two(pb, outputs=[("p", {"classification": 2})]),
     "the classification extension is not supported; ask for the output tensor itself"),
    (lambda pb: two(pb, outputs=[("p", {"shared_memory_region": "r"})]),
     "outputs in shared memory are not supported"),
    (lambda pb: pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(
        name="a", datatype="FP32", shape=[1], parameters={
            "shared_memory_region": pb.InferParameter(string_param="r")})]).SerializeToString(),
     "input 'a' is in shared memory, which is not supported"),
    (lambda pb: pb.ModelInferRequest(model_name="m").SerializeToString(),
     "the request holds no inputs; expected 1 to 4096"),
    (lambda pb: infer_request(pb, [("zz", "FP32", np.zeros(1, np.float32))]),
     "unknown input 'zz' for signature 'two'; expected 'a', 's'"),
    (lambda pb: infer_request(pb, [("a", "FP32", np.zeros((1, 2), np.float32))]),
     "missing input 's' for signature 'two'"),
    (lambda pb: infer_request(pb, [("a", "FP64", np.zeros((1, 2))), ("s", "BYTES", sample("BYTES", (1,)))]),
     "input 'a' has dtype DT_DOUBLE; signature 'two' expects DT_FLOAT"),
    (lambda pb: b"\x2a\x03\x0a\x01\xff", "malformed protobuf body: an input name is not valid UTF-8; "
     f"expected a serialized {INFER_REQUEST}"),
    (lambda pb: b"\x2a\x05\x2a\x03\x35\x00\x00", "malformed protobuf body: fp32_contents runs past"),
    (lambda pb: b"{\"inputs\": []}", "malformed protobuf body"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_client_mistakes_are_one_line_400s(pb: ModuleType, make: Any, expected: str) -> None:
    assert expected in refused(make(pb))


def test_shapes_other_than_declared_go_to_the_model(pb: ModuleType) -> None:
    """As on every protocol (and in TF Serving): ``a`` is declared [-1, 2]; [1, 3] is the
    model's to take or refuse, in its own words."""
    d = decode(infer_request(pb, [("a", "FP32", np.zeros((1, 3), np.float32)),
                                  ("s", "BYTES", sample("BYTES", (1,)))]))
    assert d.feeds["a"].shape == (1, 3)


def test_empty_tensors_need_no_data_and_scalars_have_rank_0(pb: ModuleType) -> None:
    assert decode(shaped(pb, "FP32", [0, 5])).feeds["fp32"].shape == (0, 5)
    assert decode(shaped(pb, "BYTES", [0])).feeds["bytes"].shape == (0,)
    scalar = decode(shaped(pb, "INT64", [], int64_contents=[-5])).feeds["int64"]
    assert scalar.shape == () and scalar.dtype == np.int64 and int(scalar) == -5


def tritonclient_grpc(spec: Dict[str, Any]) -> Dict[str, Any]:
    """tests/triton_grpc_bytes.py in .venv-triton: the real client's bytes, and its reading."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    python = os.environ.get("TRITON_PYTHON") or next(
        (p for p in (os.path.join(d, ".venv-triton", "bin", "python")  # a worktree: the venv's
                     for d in (root, os.path.dirname(sys.prefix))) if os.path.exists(p)), "")
    assert os.path.exists(python), f"tritonclient venv missing at {python}: run `make triton-venv`"
    proc = subprocess.run([python, os.path.join(root, "tests", "triton_grpc_bytes.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


def hexed(a: np.ndarray) -> Any:
    flat = a.reshape(-1)
    return [bytes(v).hex() for v in flat] if a.dtype == object else flat.tobytes().hex()


@pytest.mark.slow  # a subprocess: the real tritonclient.grpc in its own venv
def test_the_real_tritonclient_grpc_bytes_decode_and_our_replies_read_back() -> None:
    cases = [(d, s) for d in DATATYPES for s in SHAPES]
    requests = [{"inputs": [{"name": d.lower(), "datatype": d, "shape": list(s),
                             "hex": hexed(sample(d, s, seed=i))}],
                 "parameters": {"signature_name": d.lower(), "custom": 1.5}, "id": f"r{i}",
                 "outputs": ["y"], "sequence_id": 7, "priority": 2, "timeout": 100}
                for i, (d, s) in enumerate(cases)]
    outs = {d.lower(): sample(d, s, seed=5) for d, s in cases[::len(SHAPES)]}
    body = encode_infer_response(outs, sorted(outs), model="m", version="1")
    got = tritonclient_grpc({"requests": requests,
                             "responses": [{"hex": body.hex(), "names": sorted(outs)}]})
    for i, ((d, s), req) in enumerate(zip(cases, got["requests"])):
        decoded = decode(bytes.fromhex(req))
        assert same(decoded.feeds[d.lower()], sample(d, s, seed=i)), (d, s)
        assert decoded.form.id == f"r{i}" and decoded.outputs == ["y"]
    read_back = got["responses"][0]
    for name, a in outs.items():
        assert read_back[name]["datatype"] == name.upper() and read_back[name]["shape"] == list(a.shape)
        assert read_back[name]["hex"] == hexed(a), name
