"""``grpc.health.v1.Health/Check``'s messages (``protocol.grpc_health``) against protobuf's
generated classes for the vendored health.proto."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Dict

import pytest

from tfserverless.errors import BadRequest
from tfserverless.protocol import grpc_health


@pytest.fixture(scope="module")
def health(grpc_pb2: Dict[str, ModuleType]) -> ModuleType:
    return grpc_pb2["health"]


def test_the_service_asked_about(health: ModuleType) -> None:
    for service in ("", "inference.GRPCInferenceService", "é"):
        body = health.HealthCheckRequest(service=service).SerializeToString()
        assert grpc_health.read_service(body) == service
    unknown_field = b"\x10\x01"
    assert grpc_health.read_service(unknown_field + b"\x0a\x01x") == "x"
    long = health.HealthCheckRequest(service="s" * 10_000).SerializeToString()
    assert len(grpc_health.read_service(long)) == grpc_health.MAX_SERVICE_NAME + 1


def test_statuses_match_the_proto_enum(health: ModuleType) -> None:
    enum: Any = health.HealthCheckResponse.ServingStatus
    ours = {n: getattr(grpc_health, n) for n in ("UNKNOWN", "SERVING", "NOT_SERVING",
                                                  "SERVICE_UNKNOWN")}
    assert ours == dict(enum.items())
    for status in ours.values():
        body = grpc_health.encode_status(status)
        assert health.HealthCheckResponse.FromString(body).status == status


@pytest.mark.parametrize("body", [b"\x0a", b"\x0a\x02x", b"\x0f", b"\x09\x00"])
def test_a_malformed_request_is_a_one_line_400_naming_the_message(body: bytes) -> None:
    with pytest.raises(BadRequest) as e:
        grpc_health.read_service(body)
    assert e.value.status == 400 and "\n" not in e.value.message
    assert e.value.message.endswith(f"expected a serialized {grpc_health.HEALTH_REQUEST}")
