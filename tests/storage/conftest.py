"""Fixtures the storage tests share."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from ..conftest import MotoServer


@pytest.fixture
def bucket(moto: MotoServer) -> Iterator[str]:
    """A fresh bucket on moto's S3 (oss2 reaches it too)."""
    name = "b-" + uuid.uuid4().hex[:12]
    moto.client().create_bucket(Bucket=name)
    yield name
