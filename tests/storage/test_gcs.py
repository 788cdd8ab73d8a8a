"""gs:// against a real Google Cloud Storage emulator on loopback (``gcp-storage-emulator``,
reached by google-cloud-storage itself): archives, prefixes, the cache keyed by version, and
errors that name the object and nothing secret."""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterator

import pytest

from tfserverless import storage
from tfserverless.errors import ModelUnavailable

from ..conftest import GcsEmulator
from . import archives
from .test_fetch import cfg, same_tree


@pytest.fixture(scope="module")
def model_dir(models: Dict[str, str]) -> str:
    return models["multi"]


@pytest.fixture
def bucket(gcs: GcsEmulator) -> Iterator[Any]:
    yield gcs.client().create_bucket("b-" + uuid.uuid4().hex[:12])


def put(bucket: Any, key: str, data: bytes) -> None:
    bucket.blob(key).upload_from_string(data)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_gs_archive(gcs: GcsEmulator, bucket: Any, tmp_path: Any, model_dir: str, kind: str) -> None:
    data = archives.tar_of(model_dir) if kind == "tar.gz" else archives.zip_of(model_dir)
    put(bucket, f"models/m.{kind}", data)
    got = storage.fetch_model(cfg(tmp_path, f"gs://{bucket.name}/models/m.{kind}", gcs.env()))
    same_tree(got.path, model_dir)


def test_gs_prefix_and_cache_by_version(gcs: GcsEmulator, bucket: Any, tmp_path: Any,
                                        model_dir: str, models: Dict[str, str]) -> None:
    for rel, data in archives.tree(model_dir).items():
        put(bucket, "models/multi/" + rel, data)
    for url in (f"gs://{bucket.name}/models/multi", f"gs://{bucket.name}/models/multi/"):
        same_tree(storage.fetch_model(cfg(tmp_path, url, gcs.env())).path, model_dir)
    url = f"gs://{bucket.name}/m.tar.gz"
    put(bucket, "m.tar.gz", archives.tar_of(model_dir))
    first = storage.fetch_model(cfg(tmp_path, url, gcs.env()))
    again = storage.fetch_model(cfg(tmp_path, url, gcs.env()))
    assert again.path == first.path and again.cached
    put(bucket, "m.tar.gz", archives.tar_of(models["tf1_mnist"]))  # a new generation
    changed = storage.fetch_model(cfg(tmp_path, url, gcs.env()))
    assert changed.path != first.path
    same_tree(changed.path, models["tf1_mnist"])


def test_gs_missing_things_are_one_line_503s(gcs: GcsEmulator, bucket: Any, tmp_path: Any) -> None:
    for url, what in ((f"gs://{bucket.name}/nope.tar.gz", "no such object or prefix"),
                      ("gs:///key", "no bucket in the URL; expected gs://bucket/key"),
                      (f"gs://no-such-bucket-{uuid.uuid4().hex[:6]}/m.tgz", "NotFound (HTTP 404)")):
        with pytest.raises(ModelUnavailable) as e:
            storage.fetch_model(cfg(tmp_path, url, gcs.env()))
        assert what in e.value.message and "\n" not in e.value.message, e.value.message
