"""TF Serving's own REST tests, ported: a real ``tfserverless serve`` on 127.0.0.1 serving TF
Serving's own test models (``tests/data/tfserving``), asked what TF Serving's tests ask, held to
the answers TF Serving's tests expect.

Upstream (tensorflow/serving@9d981c5c2708d23c5407c7c1e30309e6f9798874, Apache-2.0):
``tensorflow_serving/model_servers/tensorflow_model_server_test.py`` (its ``*REST`` cases, and
the TF2 variants of its gRPC classify/regress cases, asked over REST) and
``tensorflow_serving/model_servers/http_rest_api_handler_test.cc``.  Each test names the case it
ports; where our answer differs on purpose, the test says so and why."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests

from ..conftest import Server
from .conftest import TESTDATA, TWO_VERSIONS_NAME


def sorted_object(obj: Any) -> Any:
    """Upstream's ``SortedObject``: JSON compared with every list and object sorted."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sorted(sorted_object(x) for x in obj)
    return obj


def expected_metadata(name: str) -> Any:
    with open(os.path.join(TESTDATA, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module", params=["tf1", "tf2"])
def either(request: Any) -> Server:
    """The TF1 model (upstream's REST cases) and the TF2 one (its ``*Tf2`` cases)."""
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]


def call_rest(server: Server, path: str, req: Any = None) -> Any:
    """Upstream's ``CallREST``: POST the JSON when there is a request, else GET; 200 expected."""
    url = server.url + path
    r = requests.post(url, json=req, timeout=60) if req is not None else requests.get(url, timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def error(server: Server, method: str, path: str, body: bytes, status: int) -> str:
    r = requests.request(method, server.url + path, data=body, timeout=60)
    assert r.status_code == status, (r.status_code, r.text)
    message = r.json()["error"]
    assert isinstance(message, str) and "\n" not in message
    return message


# --- tensorflow_model_server_test.py --------------------------------------------------------


def test_classify_rest(either: Server) -> None:
    """testClassifyREST (TF1), and testClassifyTf2's request over REST: the TF2 model's
    ``classify_x_to_y`` has method_name predict (``tf.saved_model.save`` writes no other) and
    takes serialized tf.Examples, which TF Serving classifies."""
    got = call_rest(either, "/v1/models/default:classify",
                    {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert got == {"results": [[["", 3.0]]]}


def test_regress_rest(either: Server) -> None:
    """testRegressREST (TF1), and testRegressTf2's request over REST (as classify above)."""
    got = call_rest(either, "/v1/models/default:regress",
                    {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    assert got == {"results": [3.0]}


def test_predict_rest(either: Server) -> None:
    """testPredictREST: rank-1 instances against a signature declaring [-1, 1] (TF2: [1]); TF
    Serving hands them to the graph, which answers them.  (Upstream asks the TF1 model only;
    the TF2 one answers the same.)"""
    got = call_rest(either, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
    assert got == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(either: Server) -> None:
    """testPredictColumnarREST."""
    got = call_rest(either, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]})
    assert got == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(tf1: Server) -> None:
    """testGetStatusREST: the version directory ``00000123`` is version 123, written as a
    string of the number."""
    assert call_rest(tf1, "/v1/models/default") == {"model_version_status": [{
        "version": "123", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}


def test_get_model_metadata_rest(tf1: Server) -> None:
    """testGetModelMetadataREST, compared as upstream compares it (``SortedObject``)."""
    got = call_rest(tf1, "/v1/models/default/metadata")
    assert sorted_object(got) == sorted_object(expected_metadata("half_plus_two_model_metadata.json"))


def test_prometheus_endpoint(tf1: Server) -> None:
    """testPrometheusEndpoint: TF Serving's metrics path answers Prometheus text."""
    r = requests.get(tf1.url + "/monitoring/prometheus/metrics", timeout=60)
    assert r.status_code == 200 and "# TYPE" in r.text
    assert r.headers["Content-Type"].startswith("text/plain")


# --- http_rest_api_handler_test.cc ------------------------------------------------------------
# Upstream serves saved_model_half_plus_two_2_versions with a version policy pinning 123 (and
# the label "Version_Label" on it).  Ours, on purpose: a base directory with several versions
# serves the highest, as TF Serving's default ("latest") policy does, so 124 answers here;
# there is no config for labels, so every label is a 404 (TestLabels below).


def test_handler_predict(two: Server) -> None:
    """Predict: rows of two against [-1, 1], rank-1 instances, ``/versions/<n>``, an explicit
    ``serving_default``, and the columnar format."""
    base = f"/v1/models/{TWO_VERSIONS_NAME}"
    assert call_rest(two, base + ":predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}) == \
        {"predictions": [[2.5, 3.0], [3.5, 4.0]]}
    assert call_rest(two, base + "/versions/124:predict", {"instances": [1.0, 2.0]}) == \
        {"predictions": [2.5, 3.0]}
    assert call_rest(two, base + "/versions/124:predict",
                     {"signature_name": "serving_default", "instances": [3.0, 4.0]}) == \
        {"predictions": [3.5, 4.0]}
    assert call_rest(two, base + "/versions/124:predict",
                     {"signature_name": "serving_default", "inputs": [3.0, 4.0]}) == \
        {"outputs": [3.5, 4.0]}


def test_handler_regress_and_classify(two: Server) -> None:
    """Regress and Classify: y = 0.5x + 2 over tf.Examples, with and without a version."""
    base = f"/v1/models/{TWO_VERSIONS_NAME}"
    req = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    assert call_rest(two, base + ":regress", req) == {"results": [42]}
    assert call_rest(two, base + "/versions/124:regress", req) == {"results": [42]}
    assert call_rest(two, base + ":classify", {"signature_name": "classify_x_to_y",
                                              "examples": [{"x": 20.0}]}) == {"results": [[["", 12]]]}


def test_handler_get_status(two: Server) -> None:
    """GetStatus, with and without ``/versions/<n>`` (124 here: see above)."""
    want = {"model_version_status": [{"version": "124", "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}
    assert call_rest(two, f"/v1/models/{TWO_VERSIONS_NAME}") == want
    assert call_rest(two, f"/v1/models/{TWO_VERSIONS_NAME}/versions/124") == want


def test_handler_get_model_metadata(two: Server) -> None:
    """GetModelMetadata against upstream's file, whose version is the pinned 123 (ours: 124)."""
    want = expected_metadata("saved_model_half_plus_two_2_versions_metadata.json")
    want["model_spec"]["version"] = "124"
    got = call_rest(two, f"/v1/models/{TWO_VERSIONS_NAME}/metadata")
    assert sorted_object(got) == sorted_object(want)


def test_handler_model_name_and_version_errors(two: Server) -> None:
    """PredictModelNameVersionErrors: another model's name, a version not served, a name
    with more after it: each NotFound (404), naming what is served."""
    assert "serves 'saved_model_half_plus_two_2_versions'" in \
        error(two, "POST", "/v1/models/foo:predict", b'{"instances": [1]}', 404)
    assert error(two, "POST", f"/v1/models/{TWO_VERSIONS_NAME}/versions/50:predict",
                 b'{"instances": [1]}', 404).endswith("version 50 not found; serving version 124")
    error(two, "POST", f"/v1/models/{TWO_VERSIONS_NAME}99:predict", b'{"instances": [1]}', 404)


@pytest.mark.parametrize("body,msg", [
    (b"", "not valid JSON"),
    (b"instances = [1, 2]", "not valid JSON"),
    (b'{ "instances": ["x", "y"] }', "holds strings; signature input is DT_FLOAT"),
    (b'{ "signature_name": 100 }', '"signature_name" must be a string'),
])
def test_handler_predict_request_errors(two: Server, body: bytes, msg: str) -> None:
    """PredictRequestErrors: InvalidArgument (400) each, in our words."""
    assert msg in error(two, "POST", f"/v1/models/{TWO_VERSIONS_NAME}:predict", body, 400)


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/foo", 404),
    ("POST", "/v1/foo", 404),
    ("GET", "/v1/models", 404),
    ("GET", "/v1/models/debug/model_name", 404),
    ("GET", "/v1/models/foo:predict", 404),
    ("GET", "/v1/models/foo/version/50:predict", 404),
    ("POST", "/v1/models/foo/versions/HELLO:regress", 404),
    ("POST", "/v1/models/foo/metadata", 404),
    ("GET", f"/v1/models/{TWO_VERSIONS_NAME}:predict", 405),
    ("POST", f"/v1/models/{TWO_VERSIONS_NAME}/metadata", 405),
    ("POST", "/v1/models/foo/label/some_label:regress", 404),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", 404),
    ("POST", f"/v1/models/{TWO_VERSIONS_NAME}/versions/{2 ** 64 - 1}:regress", 400),
])
def test_handler_unsupported_api_calls(two: Server, method: str, path: str, status: int) -> None:
    """UnsupportedApiCalls.  Upstream answers every malformed path InvalidArgument ("Malformed
    request"); ours, on purpose: a path that names no route is a 404 naming the routes, a
    model not served a 404 naming the one that is (the name is checked before the method), a
    route asked with the wrong method a 405 naming the right one.  A version past int64 is a
    400 as upstream's "Failed to convert version"; every error is TF Serving's JSON."""
    message = error(two, method, path, b"{}", status)
    if status == 400:
        assert "int64" in message


def test_labels_are_404(two: Server) -> None:
    """Predict/Regress/Classify/GetStatus by ``/labels/Version_Label``: upstream configures the
    label; ours has no labels config (one version is served), so a label is a 404 naming the
    way to ask instead.  (PredictRequestErrors' unknown label: the same 404.)"""
    message = error(two, "POST", f"/v1/models/{TWO_VERSIONS_NAME}/labels/Version_Label:predict",
                    b'{"instances": [1.0]}', 404)
    assert "label 'Version_Label' not found" in message and "/versions/<n>" in message


# --- version numbers, ours beyond upstream's cases (TF Serving's rule) ------------------------


def test_versions_are_numbers(tf1: Server) -> None:
    """``/versions/123`` and ``/versions/0123`` are the directory ``00000123``: the number
    counts; ``/versions/999`` is a 404 naming the version served."""
    for v in ("123", "0123", "00000123"):
        assert call_rest(tf1, f"/v1/models/default/versions/{v}:predict", {"instances": [[2.0]]}) == \
            {"predictions": [[3.0]]}
        assert call_rest(tf1, f"/v1/models/default/versions/{v}")["model_version_status"][0][
            "version"] == "123"
        assert call_rest(tf1, f"/v1/models/default/versions/{v}/metadata")["model_spec"][
            "version"] == "123"
    for method, rest, body in (("POST", ":predict", b'{"instances": [[2.0]]}'),
                               ("GET", "", b""), ("GET", "/metadata", b"")):
        message = error(tf1, method, f"/v1/models/default/versions/999{rest}", body, 404)
        assert message == "model 'default' version 999 not found; serving version 123"


def test_v2_versions_are_the_same_numbers(tf1: Server) -> None:
    """The V2 protocol's ``/versions/<v>`` by the same rule; its versions are strings."""
    base = tf1.url + "/v2/models/default"
    meta = requests.get(base, timeout=60).json()
    assert meta["versions"] == ["123"]
    assert requests.get(base + "/versions/0123", timeout=60).json() == meta
    assert requests.get(base + "/versions/123/ready", timeout=60).status_code == 200
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [2.0]}]}
    for path in ("/infer", "/versions/0123/infer"):
        r = requests.post(base + path, json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "123" and r.json()["outputs"][0]["data"] == [3.0]
    for path in ("/versions/999", "/versions/999/ready", "/versions/x1/infer"):
        r = requests.request("POST" if path.endswith("infer") else "GET", base + path,
                             json=body, timeout=60)
        assert r.status_code == 404 and "serving version 123" in r.json()["error"], r.text
