"""TF Serving's own gRPC tests, ported: a real ``tfserverless serve`` with ``GRPC_PORT`` serving
TF Serving's own test models (``tests/data/tfserving``), asked over gRPC with TF Serving's own
client what its tests ask, held to the answers they expect.

Upstream (tensorflow/serving@9d981c5c2708d23c5407c7c1e30309e6f9798874, Apache-2.0):
``tensorflow_serving/model_servers/tensorflow_model_server_test.py`` (testGetModelStatus,
testGetModelMetadata, testClassify[Tf2], testRegress[Tf2], testMultiInference[Tf2],
testPredictSavedModel) and ``test_util/tensorflow_model_server_test_base.py``
(VerifyPredictRequest, _VerifyModelSpec).  RPC_TIMEOUT is upstream's 5 s."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from ..conftest import Server
from .conftest import TWO_VERSIONS_NAME

RPC_TIMEOUT = 5.0
VERSION = 123  # upstream's _GetModelVersion of the half_plus_two exports


@pytest.fixture(scope="module", params=["tf1", "tf2"])
def either(request: Any) -> Server:
    """The TF1 export (upstream's plain cases) and the TF2 one (its ``*Tf2`` cases)."""
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def api() -> Dict[str, Any]:
    import grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    return dict(grpc=grpc, types=types_pb2, classification=classification_pb2,
                metadata=get_model_metadata_pb2, status=get_model_status_pb2,
                inference=inference_pb2, model_service=model_service_pb2_grpc,
                predict=predict_pb2, prediction_service=prediction_service_pb2_grpc,
                regression=regression_pb2)


def stub(api: Dict[str, Any], server: Server) -> Any:
    channel = api["grpc"].insecure_channel(server.grpc)
    return api["prediction_service"].PredictionServiceStub(channel)


def verify_model_spec(spec: Any, name: str, signature: str, version: int) -> None:
    """Upstream's ``_VerifyModelSpec``."""
    assert spec.name == name
    assert spec.signature_name == signature
    assert spec.version.value == version


def test_get_model_status(tf1: Server, api: Dict[str, Any]) -> None:
    """testGetModelStatus."""
    request = api["status"].GetModelStatusRequest()
    request.model_spec.name = "default"
    channel = api["grpc"].insecure_channel(tf1.grpc)
    result = api["model_service"].ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(tf1: Server, api: Dict[str, Any]) -> None:
    """testGetModelMetadata."""
    request = api["metadata"].GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub(api, tf1).GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == VERSION
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def test_classify(either: Server, api: Dict[str, Any]) -> None:
    """testClassify, testClassifyTf2 (``_TestClassify``)."""
    request = api["classification"].ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub(api, either).Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", VERSION)


def test_regress(either: Server, api: Dict[str, Any]) -> None:
    """testRegress, testRegressTf2 (``_TestRegress``)."""
    request = api["regression"].RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub(api, either).Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", VERSION)


def test_multi_inference(either: Server, api: Dict[str, Any]) -> None:
    """testMultiInference, testMultiInferenceTf2 (``_TestMultiInference``)."""
    request = api["inference"].MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub(api, either).MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(result.results[i].model_spec, request.tasks[i].model_spec.name,
                          request.tasks[i].model_spec.signature_name, VERSION)


def verify_predict_request(server: Server, api: Dict[str, Any], *, specify_output: bool,
                           signature_name: str = "serving_default", version: int = VERSION,
                           model_name: str = "default") -> None:
    """Upstream's ``VerifyPredictRequest``: x = [2.0] as float_val, y = 3.0 back."""
    request = api["predict"].PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = api["types"].DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub(api, server).Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == api["types"].DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == 3.0
    verify_model_spec(result.model_spec, model_name, signature_name, version)


def test_predict_saved_model(tf1: Server, api: Dict[str, Any]) -> None:
    """testPredictSavedModel (``_TestPredict``: with and without output_filter)."""
    verify_predict_request(tf1, api, specify_output=True)
    verify_predict_request(tf1, api, specify_output=False)


def test_predict_two_versions_serves_the_highest(two: Server, api: Dict[str, Any]) -> None:
    """The 2-version export: the highest version (124) answers, as TF Serving's default
    version policy (latest) serves it."""
    verify_predict_request(two, api, specify_output=True, version=124,
                           model_name=TWO_VERSIONS_NAME)
