"""`render --model-size auto` against real stores on loopback (moto's S3, http.server): one
stat sizes the model, and the disk it asks for is what the fetch then checks for."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest

from tfserverless.errors import ConfigError, ModelUnavailable
from tfserverless.storage.archive import DISK_MARGIN
from tfserverless.tools.modelsize import ARCHIVE_FACTOR, measure

from ..conftest import FileServer, MotoServer
from ..tools.test_modelsize import _fetch_on_a_disk_of
from . import archives


def _model(tmp_path: Any) -> Dict[str, bytes]:
    root = tmp_path / "model"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"pb" * 500)
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(200_000))
    return archives.tree(str(root))


@pytest.mark.slow
def test_auto_sizes_an_s3_prefix_as_its_fetch_needs(moto: MotoServer, bucket: str, tmp_path: Any,
                                                    monkeypatch: Any) -> None:
    files = _model(tmp_path)
    for rel, data in files.items():
        moto.client().put_object(Bucket=bucket, Key=f"models/m/{rel}", Body=data)
    for k, v in moto.env().items():
        monkeypatch.setenv(k, v)
    url = f"s3://{bucket}/models/m/"
    disk = measure(url, "auto", os.environ)
    total = sum(len(d) for d in files.values())
    assert disk is not None and disk.model_bytes == total
    assert disk.need_bytes == total + DISK_MARGIN and disk.how == "2 objects under the prefix"
    assert measure(url, None, os.environ) is None  # no flag: no network
    _fetch_on_a_disk_of(monkeypatch, tmp_path, url, disk.need_bytes, moto.env())
    with pytest.raises(ModelUnavailable, match="not enough free disk"):
        _fetch_on_a_disk_of(monkeypatch, tmp_path, url, disk.need_bytes - 1, moto.env())


@pytest.mark.slow
def test_auto_estimates_an_http_archive(files: FileServer, tmp_path: Any) -> None:
    root = tmp_path / "model"
    _model(tmp_path)
    data = archives.tar_of(str(root))
    files.files["/m.tar.gz"] = data
    disk = measure(f"{files.url}/m.tar.gz?token=secret", "auto", {})
    assert disk is not None and disk.model_bytes == ARCHIVE_FACTOR * len(data)
    assert disk.need_bytes == ARCHIVE_FACTOR * len(data) + DISK_MARGIN
    assert files.gets.get("/m.tar.gz", 0) == 0  # a HEAD, not a download
    with pytest.raises(ConfigError, match="expected a reachable model_path") as e:
        measure(f"{files.url}/absent.tar.gz?token=secret", "auto", {})
    assert "secret" not in str(e.value) and "\n" not in str(e.value)
