"""The litert_cpu processor end to end: ``tfserverless convert`` on the test SavedModels (the
real CLI, TensorFlow's real converter), then the converted models served over real HTTP and
called with the EAS SDK, TF Serving REST, V2, the bad-input lists and batching."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import tarfile
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import requests

from tfserverless import protocol

from ..conftest import PYTHON, Server, eas_call
from ..serving.test_protocols_http import BAD_JSON
from ..serving.test_service_http import BAD, OFF_SHAPE, _echo_inputs


def convert(*args: str) -> Tuple[int, str, str]:
    proc = subprocess.run([PYTHON, "-m", "tfserverless", "convert", *args],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def converted(models: Dict[str, str], sample_model: str,
              tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    out = tmp_path_factory.mktemp("converted")
    jobs = {
        "mnist": [sample_model, str(out / "mnist")],
        "tf1_mnist": [models["tf1_mnist"], str(out / "tf1_mnist"), "--signatures", "predict_images"],
        "multi": [models["multi"], str(out / "multi")],
        "counter": [models["counter"], str(out / "counter")],
        "batchy": [models["batchy"], str(out / "batchy.tar.gz")],
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = dict(zip(jobs, pool.map(lambda a: convert(*a), jobs.values())))
    for name, (code, _, err) in done.items():
        assert code == 0, (name, err[-3000:])
    return {name: args[1] for name, args in jobs.items()}


def manifest(path: str) -> Dict[str, Any]:
    with open(os.path.join(path, "litert.json")) as f:
        return dict(json.load(f))


@pytest.fixture(scope="module")
def mnist(converted: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": converted["mnist"], "SERVICE_TOKEN": "lite-token"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def multi(converted: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": converted["multi"], "MAX_BODY_BYTES": "1MiB"})
    yield s
    s.stop()


def reference(model: str, signature: str, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """TensorFlow's answer for the same inputs, from the SavedModel itself (a subprocess)."""
    code = ("import sys, pickle; from tfserverless.backends.tensorflow import Model; "
            "m = Model.load(sys.argv[1]);"
            "sig = m.signature(sys.argv[2]); feeds = pickle.load(sys.stdin.buffer);"
            "pickle.dump(m.run(sig, feeds, sorted(sig.outputs)), sys.stdout.buffer)")
    import pickle

    proc = subprocess.run([PYTHON, "-c", code, model, signature], input=pickle.dumps(feeds),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(pickle.loads(proc.stdout))


def test_manifest_records_source_versions_and_measured_error(converted: Dict[str, str],
                                                             sample_model: str) -> None:
    import hashlib

    m = manifest(converted["mnist"])
    assert m["format"] == "tfserverless-litert" and m["model"] == "model.tflite"
    sig = m["signatures"]["predict_images"]
    assert sig["inputs"]["images"] == {"dtype": "DT_FLOAT", "shape": [-1, 784],
                                       "tensor": sig["inputs"]["images"]["tensor"]}
    h = hashlib.sha256()
    for rel in ["saved_model.pb", *sorted(
            os.path.relpath(os.path.join(d, f), sample_model)
            for d, _, fs in os.walk(os.path.join(sample_model, "variables")) for f in fs)]:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(sample_model, rel), "rb") as f:
            h.update(f.read())
    assert m["source"]["sha256"] == h.hexdigest()
    assert m["converter"]["tensorflow"].startswith("2.") and "litert" in m["converter"]["runtime"]
    err = m["verification"]["signatures"]["predict_images"]["outputs"]["scores"]
    assert 0 <= err["max_abs"] <= m["verification"]["atol"] + m["verification"]["rtol"]
    assert m["verification"]["signatures"]["predict_images"]["cases"] == [
        "random batch 1", "random batch 4", "random batch 16"]
    assert set(m["speed"]["predict_images"]) == {"random batch 1", "random batch 16"}
    assert oct(os.stat(converted["mnist"]).st_mode & 0o777) == "0o755"
    # the warm-up requests travel with the model and verified it
    assert manifest(converted["counter"])["verification"]["warm_up_requests"] == 1
    assert os.path.isfile(os.path.join(converted["counter"], "assets.extra",
                                       "tf_serving_warmup_requests"))
    with tarfile.open(converted["batchy"]) as tf:
        assert {"litert.json", "model.tflite"} <= set(tf.getnames())


def test_flex_op_is_refused_in_one_line_naming_op_and_signature(models: Dict[str, str],
                                                                  tmp_path: Any) -> None:
    code, out, err = convert(models["tf1_mnist"], str(tmp_path / "x"))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "ParseExampleV2" in lines[0] and "'regress_sum'" in lines[0]
    assert "--signatures predict_images,serving_default" in lines[0]
    assert not os.listdir(tmp_path)  # nothing partial left behind


def test_beyond_tolerance_is_refused_and_a_looser_one_accepted(sample_model: str,
                                                               tmp_path: Any) -> None:
    code, _, err = convert(sample_model, str(tmp_path / "q"), "--quantize", "dynamic")
    assert code == 2 and err.count("\n") == 1, err
    assert "output 'scores' differs from TensorFlow's" in err and "max abs error" in err
    assert not os.listdir(tmp_path)
    code, out, err = convert(sample_model, str(tmp_path / "q.zip"), "--quantize", "dynamic",
                             "--atol", "0.05", "--rtol", "0.5")
    assert code == 0, err
    assert "quantize dynamic" in out and "predict_images.scores: max abs error" in out
    code, _, err = convert(sample_model, str(tmp_path / "q.zip"))
    assert code == 2 and "exists" in err  # never overwritten without --force


@pytest.mark.parametrize("args,msg", [
    (["--signatures", "nope"], "--signatures names 'nope'"),
    (["--atol", "nan"], "not a finite number"),
    (["--batch-sizes", "0,5"], "1..4096"),
    (["--warmup", "/nonexistent/warmup.bin"], "--warmup /nonexistent/warmup.bin: No such file"),
])
def test_bad_arguments_are_one_line(sample_model: str, tmp_path: Any, args: List[str],
                                    msg: str) -> None:
    code, _, err = convert(sample_model, str(tmp_path / "o"), *args)
    assert code == 2 and msg in err, err


def test_sdk_against_converted_model_within_recorded_tolerance(
        mnist: Server, converted: Dict[str, str], sample_model: str) -> None:
    x = np.random.RandomState(9).rand(5, 784).astype(np.float32)
    [res] = eas_call({"custom_url": mnist.url + "/", "token": "lite-token", "requests": [{
        "signature": "predict_images",
        "feeds": [{"name": "images", "shape": [5, 784], "dtype": 1, "values": x.ravel().tolist()}]}]})
    assert res["ok"], res
    got = np.array(res["outputs"]["scores"]["values"], np.float32).reshape(5, 10)
    want = reference(sample_model, "predict_images", {"images": x})["scores"]
    v = manifest(converted["mnist"])["verification"]
    assert np.allclose(got, want, atol=v["atol"], rtol=v["rtol"])
    health = requests.get(mnist.url + "/healthz", headers={"Authorization": "lite-token"}).json()
    assert health["runtime"].startswith("ai-edge-litert") and "tensorflow" not in health


def test_schema_and_other_protocols_match_tensorflow(mnist: Server) -> None:
    auth = {"Authorization": "lite-token"}
    schema = requests.post(mnist.url + "/", data=b"", headers=auth).json()
    assert schema["signature_name"] == "predict_images"
    assert schema["inputs"] == [{"name": "images", "shape": [-1, 784], "type": "DT_FLOAT"}]
    x = np.random.RandomState(2).rand(2, 784).astype(np.float32)
    r = requests.post(mnist.url + "/v1/models/mnist:predict", headers=auth,
                      json={"instances": x.tolist()})
    assert r.status_code == 200 and np.array(r.json()["predictions"]).shape == (2, 10)
    r = requests.post(mnist.url + "/v2/models/mnist/infer", headers=auth, json={
        "inputs": [{"name": "images", "shape": [2, 784], "datatype": "FP32",
                    "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [2, 10]


def test_server_never_imports_tensorflow(mnist: Server) -> None:
    pid = requests.get(mnist.url + "/healthz", headers={"Authorization": "lite-token"}).json()["pid"]
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    assert "litert" in maps.lower()
    assert "tensorflow" not in maps.replace("ai_edge_litert", "").lower()


def test_every_dtype_round_trips(multi: Server) -> None:
    inputs = _echo_inputs(np.random.RandomState(3))
    r = requests.post(multi.url + "/", data=protocol.encode_request(inputs, signature_name="echo"))
    assert r.status_code == 200, r.text
    got = protocol.decode_response(r.content)
    for name, arr in inputs.items():
        out = got[name + "_out"]
        assert out.dtype == arr.dtype and np.array_equal(out, arr), name
    half = np.array([[1.5, -0.25]], np.float16)
    r = requests.post(multi.url + "/", data=protocol.encode_request({"x": half},
                                                                    signature_name="half"))
    assert np.array_equal(protocol.decode_response(r.content)["y"], half)


# TensorFlow's Assert answers these with 400; the converter drops Assert (convert says so)
ASSERTED = "value the model rejects"


@pytest.mark.parametrize("name,body,msg", BAD, ids=[b[0] for b in BAD])
def test_eas_bad_input_list(multi: Server, name: str, body: bytes, msg: str) -> None:
    r = requests.post(multi.url + "/", data=body)
    if name == ASSERTED:
        assert r.status_code == 200
        return
    assert r.status_code == 400, (r.status_code, r.text)
    assert msg in r.text and r.text.count("\n") == 1, r.text


@pytest.mark.parametrize("proto,name,body,msg", BAD_JSON, ids=[f"{b[0]}-{b[1]}" for b in BAD_JSON])
def test_json_bad_input_lists(multi: Server, proto: str, name: str, body: bytes, msg: str) -> None:
    path = "/v1/models/m:predict" if proto == "tfs" else "/v2/models/m/infer"
    r = requests.post(multi.url + path, data=body)
    if name == ASSERTED:
        assert r.status_code == 200
        return
    assert r.status_code == 400, (r.status_code, r.text)
    assert msg in r.json()["error"] and "\n" not in r.json()["error"]


@pytest.mark.parametrize("name,sig,inputs,output,want", OFF_SHAPE, ids=[c[0] for c in OFF_SHAPE])
def test_shapes_other_than_declared(multi: Server, name: str, sig: str,
                                    inputs: Dict[str, np.ndarray], output: str,
                                    want: np.ndarray) -> None:
    """LiteRT resizes an input to the request's dimensions (TensorFlow's answer), but keeps
    the declared rank: another is a one-line 400 (rank 10 on ADD aborted the process), and
    the worker keeps serving."""
    r = requests.post(multi.url + "/", data=protocol.encode_request(inputs, signature_name=sig))
    declared = {"serving_default": 2, "fixed": 2}[sig]
    if any(v.ndim != declared for v in inputs.values()):
        assert r.status_code == 400, (r.status_code, r.text)
        assert "resizes dimensions, not ranks" in r.text and r.text.count("\n") == 1
    else:
        assert r.status_code == 200, r.text
        got = protocol.decode_response(r.content)[output]
        assert got.shape == want.shape and np.array_equal(got, want)
    a = np.ones((1, 3), np.float32)
    r = requests.post(multi.url + "/", data=protocol.encode_request({"a": a, "b": a}))
    assert r.status_code == 200 and np.array_equal(protocol.decode_response(r.content)["sum"], a + a)


def test_another_rank_on_a_fresh_interpreter_is_a_400_not_an_abort(converted: Dict[str, str]) -> None:
    """A fresh interpreter's first call at rank 10 through ADD aborted the process (SIGABRT,
    measured: a worker lost, every request in it with it); in a child process, as it was."""
    code = ("import sys, numpy as np; from tfserverless.backends.litert import LiteModel;"
            "from tfserverless.errors import BadRequest; m = LiteModel.load(sys.argv[1]);"
            "a = np.ones((1,) * 9 + (3,), np.float32); b = np.ones((1, 3), np.float32)\n"
            "try: m.run(m.signature('serving_default'), {'a': a, 'b': b}, ['sum'])\n"
            "except BadRequest as e: print(e.status, e.message)")
    proc = subprocess.run([PYTHON, "-c", code, converted["multi"]], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("400 input 'a' has shape [1, 1, 1, 1, 1, 1, 1, 1, 1, 3], rank 10")


def test_litert_errors_read_as_separate_messages() -> None:
    """LiteRT's error reporter runs its messages together; the reply parts them."""
    from tfserverless.backends.litert import _readable

    said = ("XNNPack delegate failed to reshape runtimeNode number 2 (TfLiteXNNPackDelegate) "
            "failed to prepare.tflite/kernels/tile.cc:96 num_dimensions != num_multipliers "
            "(2 != 1)Node number 0 (TILE) failed to prepare.")
    assert _readable(said) == (
        "XNNPack delegate failed to reshape runtime; Node number 2 (TfLiteXNNPackDelegate) "
        "failed to prepare.; tflite/kernels/tile.cc:96 num_dimensions != num_multipliers "
        "(2 != 1); Node number 0 (TILE) failed to prepare.")
    assert _readable("Given shapes, [0] and [1,3], are not broadcastable.") == \
        "Given shapes, [0] and [1,3], are not broadcastable."


def test_dropped_check_is_said_at_convert_time(models: Dict[str, str], tmp_path: Any) -> None:
    code, out, err = convert(models["multi"], str(tmp_path / "m"), "--signatures", "check")
    assert code == 0, err
    assert "LiteRT does not run the SavedModel's Assert ops" in out
    assert manifest(str(tmp_path / "m"))["dropped_checks"] == ["Assert"]


def test_tf1_export_warm_up_and_batching(converted: Dict[str, str], models: Dict[str, str],
                                         start_server: Any) -> None:
    s = start_server({"MODEL_PATH": converted["counter"]})
    assert s.wait_ready()["warm_up"]["replayed"] >= 1
    s = start_server({"MODEL_PATH": converted["batchy"], "RPC_BATCHING": "on",
                      "RPC_MAX_BATCH_SIZE": "16", "RPC_WORKER_THREADS": "4"})
    xs = [np.full((1, 128), i / 10, np.float32) for i in range(12)]

    def call(x: np.ndarray) -> Dict[str, np.ndarray]:
        r = requests.post(s.url + "/", data=protocol.encode_request({"x": x}))
        assert r.status_code == 200, r.text
        return protocol.decode_response(r.content)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        got = list(pool.map(call, xs))
    want = reference(models["batchy"], "serving_default", {"x": np.concatenate(xs)})["y"]
    assert np.allclose(np.concatenate([g["y"] for g in got]), want, rtol=1e-4, atol=1e-5)
    assert max(int(g["rows"][0]) for g in got) > 1  # calls were batched: LiteRT resized
    metrics = requests.get(s.url + "/metrics").text  # the same metrics as on TensorFlow
    assert ':tensorflow:serving:request_count{protocol="eas",status="200"} 12' in metrics
    batches = [ln for ln in metrics.splitlines()
               if ln.startswith(":tensorflow:serving:batching_session:processed_batch_size_count")]
    assert batches and 1 <= int(batches[0].split()[-1]) < 12
    assert ':tensorflow:cc:saved_model:load_attempt_count{status="success"} 1' in metrics
    s = start_server({"MODEL_PATH": converted["tf1_mnist"]})
    [res] = eas_call({"custom_url": s.url + "/", "requests": [{
        "signature": "predict_images",
        "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1, "values": [0.2] * 784}]}]})
    assert res["ok"] and res["outputs"]["scores"]["shape"] == [1, 10]


def test_alternating_signatures_and_shapes_stay_correct(converted: Dict[str, str]) -> None:
    """The runner's fast path (no resize when the interpreter last ran the same signature and
    shapes) never answers with another call's shapes or values."""
    from tfserverless.backends.litert import LiteModel

    m = LiteModel.load(converted["multi"])
    sd, expand = m.signature("serving_default"), m.signature("expand")
    rng = np.random.RandomState(0)
    for rows in (1, 2, 2, 1, 5, 1, 1):
        a, b = rng.rand(rows, 3).astype(np.float32), rng.rand(rows, 3).astype(np.float32)
        out = m.run(sd, {"a": a, "b": b}, ["sum", "diff"])
        assert np.array_equal(out["sum"], a + b) and np.array_equal(out["diff"], a - b)
        x = rng.rand(rows + 1).astype(np.float32)
        assert np.array_equal(m.run(expand, {"x": x}, ["y"])["y"], np.tile(x, 4))
    with pytest.raises(Exception, match="rejected the input"):
        m.run(sd, {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 3), np.float32)}, ["sum"])
    a = np.ones((2, 3), np.float32)
    assert np.array_equal(m.run(sd, {"a": a, "b": a}, ["sum"])["sum"], a + a)  # after a failure
    m.close()


def test_manifest_and_model_that_disagree_are_a_503_not_400s(converted: Dict[str, str],
                                                              tmp_path: Any) -> None:
    """A hand-edited or mismatched pair is refused at load, naming both sides; corrupt
    flatbuffers too.  Served as is, every request would be a 400 blaming the client."""
    import shutil

    from tfserverless.backends.litert import LiteModel
    from tfserverless.errors import ModelUnavailable

    renamed = tmp_path / "renamed"
    shutil.copytree(converted["multi"], renamed)
    text = (renamed / "litert.json").read_text()
    (renamed / "litert.json").write_text(text.replace('"a": {', '"q": {', 1))
    with pytest.raises(ModelUnavailable, match=r"does not match litert.json for signature"):
        LiteModel.load(str(renamed))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(converted["multi"], corrupt)
    (corrupt / "model.tflite").write_bytes(b"garbage")
    with pytest.raises(ModelUnavailable, match="LiteRT cannot load"):
        LiteModel.load(str(corrupt))
