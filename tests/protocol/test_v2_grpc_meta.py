"""The V2 gRPC service's small replies, parsed with protobuf's generated classes: liveness,
readiness, server and model metadata (as ``GET /v2/models/<name>`` says it), Triton's model
config from the signature, statistics; and the model name/version requests hold."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import Signature, TensorSpec
from tfserverless.protocol.v2_grpc import read_model
from tfserverless.protocol.v2_grpc_meta import (
    Duration,
    ModelStats,
    batchable,
    model_config,
    model_metadata,
    model_ready,
    model_statistics,
    server_live,
    server_metadata,
    server_ready,
)

SIG = Signature("serving_default",
                {"images": TensorSpec("images", 1, (-1, 28, 28)), "ids": TensorSpec("ids", 9, (-1,))},
                {"scores": TensorSpec("scores", 1, (-1, 10)), "label": TensorSpec("label", 7, (-1,))})
FIXED = Signature("s", {"x": TensorSpec("x", 19, (2, 3)), "any": TensorSpec("any", 10, None)},
                  {"y": TensorSpec("y", 20, ())})  # 20: DT_RESOURCE, which V2 has no name for


@pytest.mark.parametrize("build,message,field", [
    (server_live, "ServerLiveResponse", "live"),
    (server_ready, "ServerReadyResponse", "ready"),
    (model_ready, "ModelReadyResponse", "ready"),
])
def test_flags(pb: ModuleType, build: Any, message: str, field: str) -> None:
    for flag in (True, False):
        assert getattr(getattr(pb, message).FromString(build(flag)), field) is flag


def test_server_metadata(pb: ModuleType) -> None:
    m = pb.ServerMetadataResponse.FromString(server_metadata("tfserverless", "1.2", ["a", "b"]))
    assert (m.name, m.version, list(m.extensions)) == ("tfserverless", "1.2", ["a", "b"])


def test_model_metadata_says_what_the_http_route_says(pb: ModuleType) -> None:
    m = pb.ModelMetadataResponse.FromString(model_metadata("mnist", ["3"], SIG))
    assert (m.name, list(m.versions), m.platform) == ("mnist", ["3"], "tensorflow_savedmodel")
    assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [
        ("ids", "INT64", [-1]), ("images", "FP32", [-1, 28, 28])]
    assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [
        ("label", "BYTES", [-1]), ("scores", "FP32", [-1, 10])]
    odd = pb.ModelMetadataResponse.FromString(model_metadata("m", [], FIXED, platform="p"))
    assert [(t.name, t.datatype, list(t.shape)) for t in odd.inputs] == [
        ("any", "BOOL", [-1]), ("x", "FP16", [2, 3])]  # unknown rank: [-1], as over HTTP
    assert [(t.name, t.datatype, list(t.shape)) for t in odd.outputs] == [("y", "DT_RESOURCE", [])]
    assert list(odd.versions) == [] and odd.platform == "p"


def test_model_config_leaves_the_batch_dimension_out_when_batching(
        pb: ModuleType, grpc_pb2: Any) -> None:
    mc = grpc_pb2["model_config"]
    c = pb.ModelConfigResponse.FromString(model_config("mnist", SIG, max_batch_size=64)).config
    assert (c.name, c.platform, c.max_batch_size) == ("mnist", "tensorflow_savedmodel", 64)
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [
        ("ids", mc.TYPE_INT64, []), ("images", mc.TYPE_FP32, [28, 28])]
    assert [(o.name, o.data_type, list(o.dims)) for o in c.output] == [
        ("label", mc.TYPE_STRING, []), ("scores", mc.TYPE_FP32, [10])]
    whole = pb.ModelConfigResponse.FromString(model_config("mnist", SIG)).config
    assert whole.max_batch_size == 0 and list(whole.input[1].dims) == [-1, 28, 28]


def test_model_config_of_a_signature_without_a_batch_dimension(pb: ModuleType, grpc_pb2: Any) -> None:
    mc = grpc_pb2["model_config"]
    assert batchable(SIG) and not batchable(FIXED)
    c = pb.ModelConfigResponse.FromString(model_config("m", FIXED, max_batch_size=8)).config
    assert c.max_batch_size == 0  # no leading -1 on every tensor: nothing to batch over
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [
        ("any", mc.TYPE_BOOL, [-1]), ("x", mc.TYPE_FP16, [2, 3])]
    assert [(o.name, o.data_type) for o in c.output] == [("y", mc.TYPE_INVALID)]


def test_model_statistics(pb: ModuleType) -> None:
    stats = [ModelStats("m", "1", last_inference=1_700_000_000_123, inference_count=130,
                        execution_count=12, success=Duration(10, 5_000_000),
                        fail=Duration(2, 1_000), queue=Duration(12, 777),
                        compute_infer=Duration(12, 4_000_000)),
             ModelStats("m", "2")]
    r = pb.ModelStatisticsResponse.FromString(model_statistics(stats))
    one, two = r.model_stats
    assert (one.name, one.version, one.last_inference, one.inference_count,
            one.execution_count) == ("m", "1", 1_700_000_000_123, 130, 12)
    s = one.inference_stats
    assert (s.success.count, s.success.ns, s.fail.count, s.fail.ns, s.queue.count, s.queue.ns,
            s.compute_infer.count, s.compute_infer.ns, s.compute_input.count) == \
        (10, 5_000_000, 2, 1_000, 12, 777, 12, 4_000_000, 0)
    assert (two.name, two.version, two.inference_count) == ("m", "2", 0)
    assert two.HasField("inference_stats")
    assert list(pb.ModelStatisticsResponse.FromString(model_statistics([])).model_stats) == []


@pytest.mark.parametrize("message", ["ModelReadyRequest", "ModelMetadataRequest",
                                     "ModelConfigRequest", "ModelStatisticsRequest"])
def test_requests_naming_a_model_read_with_read_model(pb: ModuleType, message: str) -> None:
    body = getattr(pb, message)(name="mnist", version="2").SerializeToString()
    assert read_model(body, message) == ("mnist", "2")
    assert read_model(getattr(pb, message)().SerializeToString(), message) == ("", "")
    with pytest.raises(BadRequest) as e:
        read_model(b"\x12\x09", f"inference.{message}")
    assert e.value.message == ("malformed protobuf body: field runs past the end of its message; "
                               f"expected a serialized inference.{message}")
