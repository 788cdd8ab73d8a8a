"""The servers both conformance modules ask (REST and gRPC of one process, as TF Serving's
model server answers both): TF Serving's own test models, each served once per run."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from ..conftest import DATA, Server

TESTDATA = os.path.join(DATA, "tfserving")
HALF_PLUS_TWO = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
HALF_PLUS_TWO_TF2 = os.path.join(TESTDATA, "saved_model_half_plus_two_tf2_cpu")
TWO_VERSIONS = os.path.join(TESTDATA, "saved_model_half_plus_two_2_versions")
TWO_VERSIONS_NAME = "saved_model_half_plus_two_2_versions"


def serve(path: str, name: str) -> Server:
    """``tensorflow_model_server --port=<grpc> --rest_api_port=<http> --model_name=<name>
    --model_base_path=<path>``, ours."""
    return Server({"MODEL_PATH": path, "SERVICE_NAME": name}, grpc=True)


@pytest.fixture(scope="package")
def tf1() -> Iterator[Server]:
    s = serve(HALF_PLUS_TWO, "default")
    yield s
    s.stop()


@pytest.fixture(scope="package")
def tf2() -> Iterator[Server]:
    s = serve(HALF_PLUS_TWO_TF2, "default")
    yield s
    s.stop()


@pytest.fixture(scope="package")
def two() -> Iterator[Server]:
    s = serve(TWO_VERSIONS, TWO_VERSIONS_NAME)
    yield s
    s.stop()
