"""SageMaker's container contract on a real model (TF Serving's own half_plus_two, laid out as
SageMaker unpacks a model: ``<dir>/half_plus_two/00000123/``): in-process, every content type
and custom attribute answers what the TF Serving REST path answers for the request the
container would make of it, and every refusal is one JSON line; then a real ``tfserverless
serve`` started as SageMaker starts it (no ``--port``: ``SAGEMAKER_BIND_TO_PORT``), driven by
boto3's own ``sagemaker-runtime`` client."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from typing import Dict, Iterator, Optional

import numpy as np
import pytest

from tfserverless import protocol
from tfserverless.config import Config
from tfserverless.messages import Request, Response
from tfserverless.serving.app import create_service
from tfserverless.serving.service import Service

from ..conftest import TESTS, Server

HALF_PLUS_TWO = os.path.join(TESTS, "data", "tfserving", "saved_model_half_plus_two_cpu")
V1 = "/v1/models/half_plus_two"
ATTRS = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("opt-ml-model")
    shutil.copytree(HALF_PLUS_TWO, os.path.join(root, "half_plus_two"))
    return str(root)


def sagemaker_service(model_dir: str, **env: str) -> Service:
    return create_service({}, config=Config.from_environ(dict(
        {"TFSERVERLESS_PLATFORM": "sagemaker", "MODEL_PATH": model_dir, "LOG_LEVEL": "WARNING"},
        **env)))


@pytest.fixture(scope="module")
def svc(model_dir: str) -> Iterator[Service]:
    s = sagemaker_service(model_dir)
    s.holder.load_now()
    yield s


def invoke(svc: Service, body: bytes, content_type: Optional[str] = "application/json",
           attrs: str = "", path: str = "/invocations") -> Response:
    headers: Dict[str, str] = {ATTRS: attrs} if attrs else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return svc.handle(Request("POST", path, headers, body))


def tfs(svc: Service, rest: str, doc: object) -> Response:
    return svc.handle(Request("POST", V1 + rest, {"Content-Type": "application/json"},
                              json.dumps(doc).encode()))


@pytest.mark.parametrize("content_type, body, attrs, rest, doc", [
    ("application/json", b'{"instances": [1.0, 2.0, 5.0]}', "", ":predict",
     {"instances": [1.0, 2.0, 5.0]}),
    ("application/json; charset=utf-8", b'{"signature_name": "serving_default", "inputs": '
     b'{"x": [3.0]}}', "", ":predict", {"inputs": {"x": [3.0]}}),
    ("application/jsonlines", b'{"x": 1.0}\n{"x": 2.0}\n', "", ":predict",
     {"instances": [{"x": 1.0}, {"x": 2.0}]}),
    ("application/jsons", b"[1.0, 2.0]", "", ":predict", {"instances": [[1.0, 2.0]]}),
    ("text/csv", b"1.0\r\n2.0\n\n5.0\n", "", ":predict", {"instances": [1.0, 2.0, 5.0]}),
    ("text/csv", b"1,2", "", ":predict", {"instances": [[1, 2]]}),
    ("application/json", b'{"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}',
     "tfs-method=classify,tfs-model-name=half_plus_two", ":classify",
     {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}),
    ("application/json", b'{"signature_name": "regress_x_to_y", "examples": [{"x": 4.0}]}',
     "tfs-model-version=00000123,tfs-method=regress", "/versions/123:regress",
     {"signature_name": "regress_x_to_y", "examples": [{"x": 4.0}]}),
])
def test_each_content_type_answers_as_tf_serving_rest(
        svc: Service, content_type: str, body: bytes, attrs: str, rest: str, doc: object) -> None:
    got, want = invoke(svc, body, content_type, attrs), tfs(svc, rest, doc)
    assert (got.status, got.body) == (want.status, want.body)
    assert got.headers["Content-Type"] == "application/json"


def test_answers_are_the_models(svc: Service) -> None:
    r = invoke(svc, b"1.0\n2.0\n5.0", "text/csv")
    assert r.status == 200 and json.loads(r.body) == {"predictions": [2.5, 3.0, 4.5]}


@pytest.mark.parametrize("content_type, body, attrs, status, words", [
    ("application/json", b'{"instances": [1.0]}', "tfs-model-name=half_plus_three", 404,
     "model 'half_plus_three' (tfs-model-name) not found; this endpoint serves 'half_plus_two'"),
    ("application/json", b'{"instances": [1.0]}', "tfs-model-version=7", 404,
     "version 7 not found; serving version 123"),
    ("application/json", b'{"instances": [1.0]}', "tfs-method=explain", 400, "invalid tfs-method"),
    ("application/json", b'{"instances": [1.0]}', "tfs-model-name=a/b", 400,
     "invalid tfs-model-name"),
    ("text/plain", b"1.0", "", 415, "Unsupported Media Type: text/plain; expected "),
    (None, b"1.0", "", 415, "Unsupported Media Type: Unknown; expected "),
    ("text/csv", b"one,two", "", 400, "input 'x' holds strings"),
    ("text/csv", b"\n \n", "", 400, "empty CSV body"),
    ("text/csv", b"1,2\n" * 300000, "", 400, "CSV of 300000 lines of several fields"),
    ("application/jsonlines", b'{"x": [1.0]}\n{"x": ', "", 400, "body is not valid JSON"),
    ("application/jsonlines", b'{"x": [1.0]}\n\n{"x": 1, }\n', "", 400,
     "not valid JSON at line 3 column 10 (byte 23); expected JSON lines"),
    ("application/json", b"", "", 400, "\"instances\" must be a non-empty list"),
])
def test_refusals_are_one_json_line(svc: Service, content_type: Optional[str], body: bytes,
                                    attrs: str, status: int, words: str) -> None:
    r = invoke(svc, body, content_type, attrs)
    assert r.status == status, r.body
    error = json.loads(r.body)["error"]
    assert words in error and "\n" not in error


def test_v2_and_eas_protobuf_on_the_same_path(svc: Service) -> None:
    x = np.array([1.0, 2.0, 5.0], np.float32)
    v2 = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": x.tolist()}]}
    want = svc.handle(Request("POST", "/v2/models/half_plus_two/infer",
                              {"Content-Type": "application/json"}, json.dumps(v2).encode()))
    got = invoke(svc, json.dumps(v2).encode())  # V2 JSON, told from TF Serving's by its "inputs"
    assert (got.status, got.body) == (200, want.body)
    zipped = svc.handle(Request("POST", "/invocations", {  # told apart once inflated
        "Content-Type": "application/json", "Content-Encoding": "gzip"},
        gzip.compress(json.dumps(v2).encode())))
    assert (zipped.status, zipped.body) == (200, want.body)
    header = json.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": False}}]}).encode()
    binary = invoke(svc, header + x.tobytes(),
                    f"application/vnd.sagemaker-triton.binary+json;json-header-size={len(header)}")
    assert binary.status == 200, binary.body
    assert json.loads(binary.body)["outputs"][0]["data"] == [2.5, 3.0, 4.5]
    eas = invoke(svc, protocol.encode_request({"x": x}), "application/octet-stream")
    assert eas.status == 200, eas.body
    np.testing.assert_array_equal(protocol.decode_response(eas.body)["y"], [2.5, 3.0, 4.5])
    wrong = invoke(svc, protocol.encode_request({"x": x}), "application/x-protobuf",
                   "tfs-model-name=other")
    assert wrong.status == 404 and "'other'" in json.loads(wrong.body)["error"]


def test_ping_answers_at_once_while_loading_and_without_the_token(model_dir: str) -> None:
    s = sagemaker_service(model_dir, SERVICE_TOKEN="sm-token")
    first = s.handle(Request("GET", "/ping"))  # starts the load, answers now
    assert first.status == 503 and first.headers.get("Retry-After") == "1"
    s.holder.get(wait=120)
    assert s.handle(Request("GET", "/ping")).status == 200
    assert s.handle(Request("HEAD", "/ping")).status == 200
    assert s.handle(Request("POST", "/ping")).status == 405
    assert invoke(s, b"1.0", "text/csv").status == 401  # the token still guards predictions
    r = s.handle(Request("POST", "/invocations", {"Content-Type": "text/csv",
                                                   "Authorization": "sm-token"}, b"1.0"))
    assert r.status == 200, r.body


def test_metrics_count_invocations_as_sagemaker(svc: Service) -> None:
    invoke(svc, b"1.0", "text/csv")
    text = svc.handle(Request("GET", "/metrics")).body.decode()
    assert 'protocol="sagemaker",status="200"' in text.replace(", ", ",")


def test_a_server_started_as_sagemaker_starts_it_serves_boto3(model_dir: str) -> None:
    """``serve`` with no ``--port`` under SageMaker listens on SAGEMAKER_BIND_TO_PORT; boto3's
    ``invoke_endpoint`` (its own request: SigV4 headers, /endpoints/<name>/invocations) gets
    the model's answer, and an unknown model its 404."""
    import boto3
    import botocore.exceptions

    server = Server({"TFSERVERLESS_PLATFORM": "sagemaker", "MODEL_PATH": model_dir},
                    port_env="SAGEMAKER_BIND_TO_PORT")
    try:
        client = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        r = client.invoke_endpoint(EndpointName="half-plus-two", ContentType="text/csv",
                                   Accept="application/json", Body=b"1.0\n2.0\n5.0",
                                   CustomAttributes="tfs-model-name=half_plus_two")
        assert json.loads(r["Body"].read()) == {"predictions": [2.5, 3.0, 4.5]}
        assert r["ContentType"] == "application/json"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.invoke_endpoint(EndpointName="half-plus-two", ContentType="application/json",
                                   Body=b'{"instances": [1.0]}', CustomAttributes="tfs-model-name=x")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_binary_json_header_size_is_checked(svc: Service) -> None:
    x = struct.pack("<3f", 1, 2, 5)
    r = invoke(svc, b"{}" + x, "application/vnd.sagemaker-triton.binary+json;json-header-size=999")
    assert r.status == 400 and "\n" not in json.loads(r.body)["error"]


@pytest.mark.parametrize("attrs, words", [
    ("tfs-model-name=other", "model 'other' (tfs-model-name) not found"),
    ("tfs-model-version=7", "version 7 not found"),
])
def test_the_eas_schema_is_refused_for_another_model(svc: Service, attrs: str, words: str) -> None:
    """An empty protobuf body asks for the schema: a read, which the runner does not check,
    answered 200 whatever model or version the attributes named."""
    r = invoke(svc, b"", "application/octet-stream", attrs)
    assert r.status == 404 and words in json.loads(r.body)["error"]
    assert invoke(svc, b"", "application/octet-stream", "tfs-model-name=half_plus_two").status == 200


@pytest.mark.parametrize("method", ["classify", "regress"])
def test_a_verb_for_a_body_that_has_none_is_refused(svc: Service, method: str) -> None:
    """``tfs-method`` picks TF Serving's verb; V2 and EAS requests are predictions, which were
    answered as such (200, another reply's shape) to a client that asked to classify."""
    x = np.array([1.0, 2.0], np.float32)
    v2 = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                 "data": x.tolist()}]}).encode()
    header = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    triton = f"application/vnd.sagemaker-triton.binary+json;json-header-size={len(header)}"
    attrs = f"tfs-method={method}"
    for body, content_type in [(v2, "application/json"), (header + x.tobytes(), triton),
                               (protocol.encode_request({"x": x}), "application/octet-stream"),
                               (b"", "application/x-protobuf")]:
        r = invoke(svc, body, content_type, attrs)
        assert r.status == 400, (content_type, r.body)
        error = json.loads(r.body)["error"]
        assert f"tfs-method={method}" in error and "expected tfs-method=predict" in error
        assert "\n" not in error
        assert invoke(svc, body, content_type, "tfs-method=predict").status == 200
