"""TF Serving's own Python client (``tensorflow-serving-api``: ``PredictionServiceStub``,
``ModelServiceStub``), unchanged, over real gRPC to a real ``tfserverless serve`` process with
``GRPC_PORT``: every PredictionService/ModelService method, ``tensor_content`` and repeated
fields, versions and labels, auth, the status codes, a 25 MB message; answers equal to the
REST path's on the same server."""

from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import numpy as np
import pytest
import requests

from ..conftest import Server

TOKEN = "tfs-grpc-token-never-logged-77aa"
AUTH = (("authorization", TOKEN),)


@pytest.fixture(scope="module")
def server(models: Dict[str, str]) -> Iterator[Server]:
    s = Server({"MODEL_PATH": models["tf1_mnist"], "SERVICE_TOKEN": TOKEN,
                "SERVICE_NAME": "mnist"}, grpc=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def apis() -> Any:
    import grpc
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_management_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    class Apis:
        pass

    a = Apis()
    for m in (grpc, classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
              inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
              prediction_service_pb2_grpc, regression_pb2):
        setattr(a, m.__name__.rsplit(".", 1)[-1], m)
    return a


@pytest.fixture(scope="module")
def stubs(server: Server, apis: Any) -> Iterator[Tuple[Any, Any]]:
    ch = apis.grpc.insecure_channel(server.grpc, options=[
        ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    yield (apis.prediction_service_pb2_grpc.PredictionServiceStub(ch),
           apis.model_service_pb2_grpc.ModelServiceStub(ch))
    ch.close()


def images(n: int = 2) -> np.ndarray:
    return np.random.RandomState(n).rand(n, 784).astype(np.float32)


def rest(server: Server, verb: str, doc: Dict[str, Any]) -> Any:
    r = requests.post(f"{server.url}/v1/models/mnist:{verb}", json=doc,
                      headers={"Authorization": TOKEN}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def predict_request(apis: Any, x: Any, *, signature: str = "predict_images") -> Any:
    import tensorflow as tf

    req = apis.predict_pb2.PredictRequest()
    req.model_spec.name = "mnist"
    req.model_spec.signature_name = signature
    req.inputs["images"].CopyFrom(x if not isinstance(x, np.ndarray) else tf.make_tensor_proto(x))
    return req


def code_of(fn: Any, req: Any, apis: Any, **kw: Any) -> Tuple[str, str]:
    with pytest.raises(apis.grpc.RpcError) as e:
        fn(req, timeout=60, **kw)
    return e.value.code().name, e.value.details()


def test_predict_tensor_content_and_repeated_fields_equal_rest(server: Server, stubs: Any,
                                                               apis: Any) -> None:
    import tensorflow as tf

    predict, _ = stubs
    x = images(3)
    want = np.array(rest(server, "predict", {"signature_name": "predict_images",
                                              "instances": x.tolist()})["predictions"])
    resp = predict.Predict(predict_request(apis, x), timeout=60, metadata=AUTH)
    got = tf.make_ndarray(resp.outputs["scores"])
    assert got.shape == (3, 10) and np.allclose(got, want, atol=1e-6)
    assert resp.model_spec.name == "mnist" and resp.model_spec.signature_name == "predict_images"
    # the same values as repeated float_val, not tensor_content
    t = tf.make_tensor_proto(x)
    t.ClearField("tensor_content")
    t.float_val.extend(x.reshape(-1).tolist())
    resp2 = predict.Predict(predict_request(apis, t), timeout=60, metadata=AUTH)
    assert np.array_equal(tf.make_ndarray(resp2.outputs["scores"]), got)


def test_output_filter(stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    req = predict_request(apis, images(1))
    req.output_filter.append("scores")
    resp = predict.Predict(req, timeout=60, metadata=AUTH)
    assert list(resp.outputs) == ["scores"]
    req.output_filter[:] = ["nope"]
    code, details = code_of(predict.Predict, req, apis, metadata=AUTH)
    assert code == "INVALID_ARGUMENT" and "nope" in details and "\n" not in details


def test_versions_and_labels_resolve_as_rest(server: Server, stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    served = int(requests.get(f"{server.url}/v1/models/mnist", headers={"Authorization": TOKEN},
                              timeout=30).json()["model_version_status"][0]["version"])
    req = predict_request(apis, images(1))
    req.model_spec.version.value = served
    assert predict.Predict(req, timeout=60, metadata=AUTH).model_spec.version.value == served
    req.model_spec.version.value = served + 7
    assert code_of(predict.Predict, req, apis, metadata=AUTH)[0] == "NOT_FOUND"
    req.model_spec.ClearField("version")
    req.model_spec.version_label = "stable"
    code, details = code_of(predict.Predict, req, apis, metadata=AUTH)
    assert code == "NOT_FOUND" and "stable" in details


def test_auth_and_name(stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    req = predict_request(apis, images(1))
    assert code_of(predict.Predict, req, apis)[0] == "UNAUTHENTICATED"
    assert code_of(predict.Predict, req, apis,
                   metadata=(("authorization", "wrong"),))[0] == "UNAUTHENTICATED"
    req.model_spec.name = "other"
    code, details = code_of(predict.Predict, req, apis, metadata=AUTH)
    assert code == "NOT_FOUND" and "other" in details


def test_bad_inputs_are_invalid_argument_in_one_line(server: Server, stubs: Any,
                                                      apis: Any) -> None:
    import tensorflow as tf

    predict, _ = stubs
    req = predict_request(apis, tf.make_tensor_proto(np.zeros((1, 784), np.int32)))
    code, details = code_of(predict.Predict, req, apis, metadata=AUTH)
    assert code == "INVALID_ARGUMENT" and "\n" not in details
    t = tf.make_tensor_proto(images(1))
    t.tensor_content = t.tensor_content[:-4]
    code, details = code_of(predict.Predict, predict_request(apis, t), apis, metadata=AUTH)
    assert code == "INVALID_ARGUMENT" and "\n" not in details
    with apis.grpc.insecure_channel(server.grpc) as ch:
        call = ch.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(apis.grpc.RpcError) as e:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=30, metadata=AUTH)
        assert e.value.code().name == "INVALID_ARGUMENT"


def examples(apis: Any, rows: np.ndarray, field: str = "x") -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import input_pb2

    inp = input_pb2.Input()
    for r in rows:
        ex = tf.train.Example(features=tf.train.Features(feature={
            field: tf.train.Feature(float_list=tf.train.FloatList(value=r.tolist()))}))
        inp.example_list.examples.add().CopyFrom(ex)
    return inp


def test_classify_and_regress_equal_rest(server: Server, stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    x = images(2)
    creq = apis.classification_pb2.ClassificationRequest()
    creq.model_spec.name = "mnist"
    creq.input.CopyFrom(examples(apis, x))
    cres = predict.Classify(creq, timeout=60, metadata=AUTH)
    want = rest(server, "classify", {"examples": [{"x": r.tolist()} for r in x]})["results"]
    got = [[[c.label, c.score] for c in cl.classes] for cl in cres.result.classifications]
    assert [[lab for lab, _ in row] for row in got] == [[lab for lab, _ in row] for row in want]
    assert np.allclose([[s for _, s in row] for row in got], [[s for _, s in row] for row in want],
                       atol=1e-6)
    rreq = apis.regression_pb2.RegressionRequest()
    rreq.model_spec.name = "mnist"
    rreq.model_spec.signature_name = "regress_sum"
    rreq.input.CopyFrom(examples(apis, x))
    rres = predict.Regress(rreq, timeout=60, metadata=AUTH)
    want_r = rest(server, "regress", {"signature_name": "regress_sum",
                                      "examples": [{"x": r.tolist()} for r in x]})["results"]
    assert np.allclose([r.value for r in rres.result.regressions], want_r, atol=1e-4)


def test_multi_inference(stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    req = apis.inference_pb2.MultiInferenceRequest()
    for sig, method in (("serving_default", "tensorflow/serving/classify"),
                        ("regress_sum", "tensorflow/serving/regress")):
        t = req.tasks.add()
        t.model_spec.name = "mnist"
        t.model_spec.signature_name = sig
        t.method_name = method
    req.input.CopyFrom(examples(apis, images(2)))
    resp = predict.MultiInference(req, timeout=60, metadata=AUTH)
    assert len(resp.results) == 2
    assert len(resp.results[0].classification_result.classifications) == 2
    assert len(resp.results[1].regression_result.regressions) == 2


def test_metadata_and_status(server: Server, stubs: Any, apis: Any) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2 as md

    predict, models = stubs
    req = md.GetModelMetadataRequest()
    req.model_spec.name = "mnist"
    req.metadata_field.append("signature_def")
    resp = predict.GetModelMetadata(req, timeout=60, metadata=AUTH)
    defs = md.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(defs)
    want = requests.get(f"{server.url}/v1/models/mnist/metadata", headers={"Authorization": TOKEN},
                        timeout=30).json()["metadata"]["signature_def"]["signature_def"]
    assert sorted(defs.signature_def) == sorted(want)
    for name, sig in defs.signature_def.items():
        assert sorted(sig.inputs) == sorted(want[name]["inputs"])
        assert sig.method_name == want[name]["method_name"]
    sreq = apis.get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "mnist"
    sresp = models.GetModelStatus(sreq, timeout=60, metadata=AUTH)
    (status,) = sresp.model_version_status
    assert status.state == apis.get_model_status_pb2.ModelVersionStatus.AVAILABLE
    reload = apis.model_management_pb2.ReloadConfigRequest()
    code, details = code_of(models.HandleReloadConfigRequest, reload, apis, metadata=AUTH)
    assert code == "UNIMPLEMENTED" and details


def test_25_mb_message(stubs: Any, apis: Any) -> None:
    import tensorflow as tf

    predict, _ = stubs
    x = np.random.RandomState(0).rand(8200, 784).astype(np.float32)  # 25.7 MB
    resp = predict.Predict(predict_request(apis, x), timeout=120, metadata=AUTH)
    assert tf.make_ndarray(resp.outputs["scores"]).shape == (8200, 10)


def test_metrics_label_the_grpc_protocol(server: Server, stubs: Any, apis: Any) -> None:
    predict, _ = stubs
    predict.Predict(predict_request(apis, images(1)), timeout=60, metadata=AUTH)
    text = requests.get(f"{server.url}/metrics", headers={"Authorization": TOKEN}, timeout=30).text
    assert 'protocol="tfserving-grpc"' in text
