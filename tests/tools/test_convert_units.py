"""The fast lane of the LiteRT path: verification arithmetic, random inputs, the manifest's
checks, the converter's refusal parsing, the backend choice and the CLI's argument checks."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict

import numpy as np
import pytest

from tfserverless.__main__ import _batch_sizes, _tolerance
from tfserverless.backends import litert as model_litert
from tfserverless.backends import litert_manifest, registry
from tfserverless.errors import ModelUnavailable
from tfserverless.protocol.signature import Signature, TensorSpec
from tfserverless.storage import find_saved_model_root
from tfserverless.tools import convert, verify


def sig(name: str = "s", **inputs: Any) -> Signature:
    return Signature(name, {k: TensorSpec(k, *v) for k, v in inputs.items()},
                     {"y": TensorSpec("y", 1, (-1,))})


def test_compare_within_and_beyond_tolerance() -> None:
    w = np.array([1.0, 100.0, 0.0], np.float32)
    assert verify.compare(w, w, 0, 0) == verify.Error(0.0, 0.0, 0)
    e = verify.compare(w, w + np.array([1e-6, 1e-3, 0], np.float32), 1e-5, 1e-4)
    assert e.mismatches == 0 and e.max_abs == pytest.approx(1e-3, rel=1e-2)
    e = verify.compare(w, w + np.array([1e-4, 0, 0], np.float32), 1e-5, 1e-5)
    assert e.mismatches == 1
    nan = np.array([np.nan, np.inf], np.float32)
    assert verify.compare(nan, nan.copy(), 0, 0).mismatches == 0  # NaN == NaN, inf == inf
    assert verify.compare(nan, np.array([1.0, np.inf], np.float32), 1, 1).mismatches == 1
    assert verify.compare(w, w[:2], 1, 1).mismatches > 0  # a shape change is never close
    assert verify.compare(np.array([1, 2]), np.array([1, 3]), 10, 10).mismatches == 1  # ints exact
    s = np.array([b"a", b"b"], object)
    assert verify.compare(s, s.copy(), 0, 0).mismatches == 0
    assert verify.compare(np.zeros((0, 3)), np.zeros((0, 3)), 0, 0).mismatches == 0
    assert verify.compare(np.float32(2.0), np.float32(2.5), 0.1, 0).mismatches == 1  # 0-d


def test_random_cases_are_deterministic_and_shaped_by_the_signature() -> None:
    batched = sig(a=(1, (-1, 784)), b=(9, (-1, -1)), s=(7, (-1,)), q=(10, None))
    cases = list(verify.random_cases(batched, (1, 4), seed=7))
    assert [c.source for c in cases] == ["random batch 1", "random batch 4"]
    f = cases[1].feeds
    assert f["a"].shape == (4, 784) and f["a"].dtype == np.float32
    assert f["b"].shape == (4, verify.UNKNOWN_DIM) and f["b"].dtype == np.int64
    assert f["s"].dtype == object and isinstance(f["s"][0], bytes)
    assert f["q"].shape == (4,) and f["q"].dtype == bool
    again = list(verify.random_cases(batched, (1, 4), seed=7))[1].feeds
    assert all(np.array_equal(f[k], again[k]) for k in f)
    fixed = list(verify.random_cases(sig(x=(1, (2, 3)), k=(3, ())), (1, 4, 16), seed=0))
    assert [c.source for c in fixed] == ["random input"]
    assert fixed[0].feeds["x"].shape == (2, 3) and fixed[0].feeds["k"].shape == ()


class Fixed:
    """A ``Servable`` answering with what it is told."""

    path, default_signature, tf_version, runtime = "", "s", "", "test"
    import_seconds = load_seconds = 0.0

    def __init__(self, answer: Any, fail: str = "") -> None:
        self.signatures = {"s": sig(x=(1, (-1,)))}
        self.answer, self.fail = answer, fail

    def signature(self, name: str) -> Signature:
        return self.signatures["s"]

    def run(self, s: Signature, feeds: Dict[str, Any], outputs: Any) -> Dict[str, Any]:
        if self.fail:
            from tfserverless.errors import BadRequest

            raise BadRequest(self.fail)
        return {"y": self.answer(feeds["x"])}

    def close(self) -> None:
        pass


def test_verify_refuses_drift_litert_failures_and_unverifiable_signatures() -> None:
    cases = list(verify.random_cases(Fixed(None).signatures["s"], (1, 3), 0))
    same = verify.verify(Fixed(lambda x: x), Fixed(lambda x: x + 1e-7), cases, atol=1e-5, rtol=0)
    assert same["s"]["cases"] == ["random batch 1", "random batch 3"]
    with pytest.raises(verify.Refused, match=r"output 'y' differs .* random batch 1: max abs"):
        verify.verify(Fixed(lambda x: x), Fixed(lambda x: x + 1), cases, atol=1e-5, rtol=0)
    with pytest.raises(verify.Refused, match="LiteRT fails on random batch 1, which TensorFlow runs"):
        verify.verify(Fixed(lambda x: x), Fixed(None, fail="nope"), cases, atol=1, rtol=1)
    with pytest.raises(verify.Refused, match=r"could not be verified: TensorFlow rejects .*\(no\)"):
        verify.verify(Fixed(None, fail="no"), Fixed(lambda x: x), cases, atol=1, rtol=1)


# the converter's own words (TensorFlow 2.21) when an op needs the flex delegate
FLEX = """error: failed while converting: 'regress_sum': 
Some ops are not supported by the native TFLite runtime, you can enable TF kernels fallback \
using TF Select. See instructions: https://www.tensorflow.org/lite/guide/ops_select 
TF Select ops: ParseExampleV2
Details:
	tf.ParseExampleV2(tensor<*x!tf_type.string>) -> (tensor<*xf32>)
"""  # noqa: W291
OLD = "<unknown>:0: error: loc(...): 'tf.ParseExample' op is neither a custom op nor a flex op"


def test_flex_diagnostics_are_read_for_op_and_signature() -> None:
    assert convert._needs_flex(FLEX) == "ParseExampleV2"
    assert convert._needs_flex(OLD) == "ParseExample"
    assert convert._needs_flex("error: something else") is None
    assert convert._FAILED_SIG.search(FLEX).group(1) == "regress_sum"  # type: ignore[union-attr]


def write_manifest(tmp: Any, **over: Any) -> str:
    m: Dict[str, Any] = {"format": "tfserverless-litert", "format_version": 1,
                         "model": "model.tflite", "signatures": {"s": {
                             "method": "tensorflow/serving/predict",
                             "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 3], "tensor": "x:0"}},
                             "outputs": {"y": {"dtype": "DT_INT64", "shape": None}}}}}
    m.update(over)
    with open(os.path.join(str(tmp), "litert.json"), "w") as f:
        json.dump(m, f)
    return str(tmp)


def test_manifest_written_is_read_back_as_the_same_signatures(tmp_path: Any) -> None:
    sigs = {"s": sig("s", x=(1, (-1, 3)), y=(9, None)), "t": sig("t", z=(7, ()))}
    litert_manifest.write_manifest(str(tmp_path), litert_manifest.new_manifest(sigs))
    back = litert_manifest.signatures_from_manifest(litert_manifest.read_manifest(str(tmp_path)))
    assert back == sigs


def test_manifest_is_read_into_signatures(tmp_path: Any) -> None:
    sigs = litert_manifest.signatures_from_manifest(litert_manifest.read_manifest(write_manifest(tmp_path)))
    s = sigs["s"]
    assert s.inputs["x"] == TensorSpec("x", 1, (-1, 3), "x:0")
    assert s.outputs["y"] == TensorSpec("y", 9, None, "")
    assert s.method == "tensorflow/serving/predict"


@pytest.mark.parametrize("over,msg", [
    ({"format": "other"}, "is not a tfserverless-litert manifest"),
    ({"format_version": 9}, "upgrade tfserverless"),
    ({"signatures": {}}, "names no signatures"),
    ({"signatures": {"s": {"inputs": {"x": {"dtype": "DT_NOPE", "shape": []}}}}}, "DT_NOPE"),
    ({"signatures": {"s": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-2]}}}}}, "shape [-2]"),
    ({"signatures": {"s": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": "1"}}}}}, "shape '1'"),
    ({"model": "../../etc/passwd"}, "must be a file beside the manifest"),
])
def test_broken_manifest_is_a_503_line(tmp_path: Any, over: Dict[str, Any], msg: str) -> None:
    path = write_manifest(tmp_path, **over)
    with pytest.raises(ModelUnavailable, match=msg.replace("[", r"\[")) as e:
        model_litert.LiteModel.load(path)
    assert "\n" not in e.value.message


def test_unreadable_manifest_is_a_503_line(tmp_path: Any) -> None:
    (tmp_path / "litert.json").write_bytes(b"\xff{")
    with pytest.raises(ModelUnavailable, match="not readable JSON"):
        litert_manifest.read_manifest(str(tmp_path))


def test_backend_is_chosen_by_what_the_directory_holds(tmp_path: Any) -> None:
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "lite" / "3").mkdir(parents=True)
    write_manifest(tmp_path / "lite" / "3")
    assert registry.backend_for(str(tmp_path / "tf"))[0] == "TensorFlow"
    assert registry.backend_for(str(tmp_path / "lite" / "3"))[0] == "LiteRT"
    # storage finds a converted model in TF Serving's versioned layout too
    assert find_saved_model_root(str(tmp_path / "lite"), quiet=True) == str(tmp_path / "lite" / "3")


@pytest.mark.parametrize("text,ok", [("0", True), ("1e-3", True), ("-1", False), ("nan", False),
                                     ("inf", False), ("x", False)])
def test_tolerance_argument(text: str, ok: bool) -> None:
    if ok:
        assert _tolerance(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="finite number >= 0"):
            _tolerance(text)


def test_batch_sizes_argument() -> None:
    assert _batch_sizes("1,8,64") == (1, 8, 64)
    for bad in ("", "0", "1,x", "5000", ",".join(["1"] * 17)):
        with pytest.raises(argparse.ArgumentTypeError, match=r"1\.\.4096"):
            _batch_sizes(bad)


class FakeInterpreter:
    """Counts how many of its kind run at once."""

    running = 0
    peak = 0
    lock = __import__("threading").Lock()

    def get_signature_runner(self, key: str) -> Any:
        def run(**feeds: Any) -> Dict[str, Any]:
            import time

            with FakeInterpreter.lock:
                FakeInterpreter.running += 1
                FakeInterpreter.peak = max(FakeInterpreter.peak, FakeInterpreter.running)
            time.sleep(0.03)
            with FakeInterpreter.lock:
                FakeInterpreter.running -= 1
            return {"y": feeds["x"] * 2}

        return run


def test_interpreters_are_pooled_up_to_the_cap() -> None:
    import concurrent.futures

    made: list = []

    def make() -> FakeInterpreter:
        made.append(1)
        return FakeInterpreter()

    s = sig(x=(1, (-1,)))
    m = model_litert.LiteModel("/m", {"s": s}, make, max_interpreters=2)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda i: m.run(s, {"x": np.full(2, i, np.float32)}, ["y"])["y"],
                             range(12)))
    assert [float(o[0]) for o in outs] == [2.0 * i for i in range(12)]
    assert len(made) == 2 and FakeInterpreter.peak == 2  # never more than the cap at once
