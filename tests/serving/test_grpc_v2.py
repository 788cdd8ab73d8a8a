"""NVIDIA's ``tritonclient.grpc``, unchanged (in .venv-triton), over real gRPC to a real
``tfserverless serve`` process with ``GRPC_PORT``: every V2 method it calls in its common paths
(live, ready, model ready, server and model metadata, model config, statistics, infer with
raw contents, requested outputs, BYTES, parameters), auth, and answers equal to the HTTP V2
path's on the same server."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest
import requests

from ..conftest import TESTS, Server
from .test_protocols_http import triton_python

TOKEN = "v2-grpc-token-never-logged-31c"


@pytest.fixture(scope="module")
def server(models: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                "SERVICE_NAME": "mnist"}, grpc=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def multi(models: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["multi"], "SERVICE_NAME": "multi"}, grpc=True)
    yield s
    s.stop()


def triton_grpc(spec: Dict[str, Any]) -> Dict[str, Any]:
    proc = subprocess.run([triton_python(), os.path.join(TESTS, "triton_grpc_client.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


X = np.random.RandomState(5).rand(3, 784).astype(np.float32)


def images(x: np.ndarray) -> Dict[str, Any]:
    return {"name": "images", "shape": list(x.shape), "datatype": "FP32",
            "values": x.reshape(-1).tolist()}


def http_scores(server: Server, x: np.ndarray) -> np.ndarray:
    r = requests.post(f"{server.url}/v2/models/mnist/infer", headers={"Authorization": TOKEN},
                      json={"inputs": [dict(images(x), data=x.reshape(-1).tolist())]}, timeout=60)
    assert r.status_code == 200, r.text
    (out,) = [o for o in r.json()["outputs"] if o["name"] == "scores"]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_tritonclient_grpc_unchanged(server: Server) -> None:
    reqs: List[Dict[str, Any]] = [
        {"inputs": [images(X)], "outputs": ["scores"], "id": "a"},
        {"inputs": [images(X[:1])], "outputs": None},
        {"inputs": [images(X[:1])], "outputs": None, "version": "1"},
        {"inputs": [images(X[:1])], "outputs": None, "version": "9"},
        {"inputs": [dict(images(X[:1]), name="nope")], "outputs": None},
        {"inputs": [images(X[:1])], "outputs": ["nope"]},
        {"inputs": [images(X[:1])], "outputs": None,
         "parameters": {"signature_name": "predict_images"}},
    ]
    out = triton_grpc({"url": server.grpc, "model": "mnist", "token": TOKEN,
                       "requests": reqs})
    assert out["live"] is True and out["ready"] is True and out["model_ready"] is True
    assert out["server"]["name"] == "tfserverless"
    meta = out["metadata"]
    assert meta["name"] == "mnist" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": ["-1", "784"]}]
    assert out["config"]["config"]["name"] == "mnist", out["config"]
    res = out["results"]
    for i, x in ((0, X), (1, X[:1]), (2, X[:1]), (6, X[:1])):
        assert res[i]["ok"], res[i]
        got = res[i]["outputs"]["scores"]
        assert got["datatype"] == "FP32" and got["shape"] == [len(x), 10]
        np.testing.assert_allclose(np.array(got["values"]).reshape(len(x), 10),
                                   http_scores(server, x), rtol=1e-6, atol=1e-7)
    assert res[0]["id"] == "a" and res[0]["model_name"] == "mnist"
    assert list(res[0]["outputs"]) == ["scores"]
    assert not res[3]["ok"] and "NOT_FOUND" in res[3]["status"] and "9" in res[3]["error"]
    assert not res[4]["ok"] and "INVALID_ARGUMENT" in res[4]["status"]
    assert "unknown input 'nope'" in res[4]["error"]
    assert not res[5]["ok"] and "INVALID_ARGUMENT" in res[5]["status"]
    stats = out["stats"]["model_stats"]
    assert stats[0]["name"] == "mnist"
    assert int(stats[0]["inference_stats"]["success"]["count"]) >= 4
    # the same counters over HTTP (Triton's GET /v2/models/<name>/stats)
    r = requests.get(f"{server.url}/v2/models/mnist/stats", headers={"Authorization": TOKEN},
                     timeout=30)
    assert r.status_code == 200, r.text
    http = r.json()["model_stats"][0]
    assert http["name"] == "mnist" and http["version"] == "1"
    assert http["inference_stats"]["success"]["count"] >= int(
        stats[0]["inference_stats"]["success"]["count"])
    assert http["inference_stats"]["fail"]["count"] >= 3  # the three refused above
    assert requests.get(f"{server.url}/v2/models/mnist/stats", timeout=30).status_code == 401


def test_without_the_token(server: Server) -> None:
    out = triton_grpc({"url": server.grpc, "model": "mnist", "token": "",
                       "requests": [{"inputs": [images(X[:1])], "outputs": None}]})
    assert out["live"] is True  # liveness needs no token, as /v2/health/live
    assert "UNAUTHENTICATED" in out["metadata"]["error"]
    assert not out["results"][0]["ok"] and "UNAUTHENTICATED" in out["results"][0]["status"]


ECHO = {"f32": ("FP32", [1.5, -2.0]), "f64": ("FP64", [1e300, 2.0]),
        "i32": ("INT32", [-(2 ** 31), 7]), "i64": ("INT64", [-(2 ** 63), 9]),
        "b": ("BOOL", [True, False]), "s": ("BYTES", ["a\x00b", "\xff"]),
        "u8": ("UINT8", [0, 255]), "i8": ("INT8", [-128, 127]),
        "i16": ("INT16", [-32768, 5]), "u16": ("UINT16", [65535, 1])}


def test_every_datatype_round_trips(multi: Server) -> None:
    """The multi model's ``echo`` gives back each input (every wire dtype) as ``<name>_out``;
    ``half`` does for FP16."""
    inputs = [{"name": n, "shape": [1, 2], "datatype": d, "values": v}
              for n, (d, v) in sorted(ECHO.items())]
    half = [{"name": "x", "shape": [1, 2], "datatype": "FP16", "values": [0.5, -1.0]}]
    out = triton_grpc({"url": multi.grpc, "model": "multi", "token": "",
                       "requests": [{"inputs": inputs, "outputs": None,
                                     "parameters": {"signature_name": "echo"}},
                                    {"inputs": half, "outputs": None,
                                     "parameters": {"signature_name": "half"}}]})
    echo, halved = out["results"]
    assert echo["ok"], echo
    for name, (datatype, values) in ECHO.items():
        got = echo["outputs"][name + "_out"]
        assert got["datatype"] == datatype and got["shape"] == [1, 2], name
        assert got["values"] == values, name
    assert halved["ok"], halved
    assert halved["outputs"]["y"] == {"datatype": "FP16", "shape": [1, 2], "values": [0.5, -1.0]}
