"""Fixtures of the protocol tests: protobuf's generated classes for the vendored gRPC protos."""

from __future__ import annotations

from types import ModuleType
from typing import Dict

import pytest

from ..grpc_protos import compile_protos


@pytest.fixture(scope="session")
def grpc_pb2(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, ModuleType]:
    """{"grpc_service": ..., "model_config": ..., "health": ...}: the generated modules."""
    return compile_protos(str(tmp_path_factory.mktemp("grpc_pb2")))


@pytest.fixture(scope="session")
def pb(grpc_pb2: Dict[str, ModuleType]) -> ModuleType:
    """inference's grpc_service_pb2 (ModelInferRequest and the rest)."""
    return grpc_pb2["grpc_service"]
