"""Fast lane: `render --model-size` parsing, and the disk a model_path needs (modelsize), held
to the fetch's own free-disk checks (storage.archive.check_disk) on real local archives."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import zipfile
from typing import Any, Dict, NamedTuple, Optional

import pytest

from tfserverless import storage
from tfserverless.config import Config
from tfserverless.errors import ConfigError, ModelUnavailable
from tfserverless.storage.archive import DISK_MARGIN
from tfserverless.storage.base import ObjectInfo
from tfserverless.tools.modelsize import ARCHIVE_FACTOR, GIB, MIB, Disk, measure, parse_model_size


@pytest.mark.parametrize("text,n", [
    ("800MB", 800 * MIB), ("1.5GiB", 3 * GIB // 2), ("2G", 2 * GIB), ("2Gi", 2 * GIB),
    ("123", 123), ("7B", 7), ("64kb", 64 << 10), (" 2 gib ", 2 * GIB), ("1T", 1 << 40),
    ("1.5", 2), ("0.1K", 103), ("1.000000001K", 1025),  # fractions round up, never down
])
def test_sizes_parse_in_units_of_1024(text: str, n: int) -> None:
    assert parse_model_size(text) == n


@pytest.mark.parametrize("text,why", [
    ("", "is not a size"), ("   ", "is not a size"), ("-1", "is negative"),
    ("-1GB", "is negative"), ("abc", "is not a size"), ("1e9", "is not a size"),
    ("nan", "is not a size"), ("inf", "is not a size"), ("0x10", "is not a size"),
    ("1_000", "is not a size"), ("\u0661\u0662\u0663", "is not a size"),  # Arabic-Indic digits
    ("1.5.5", "is not a size"), ("12 34", "is not a size"), ("1GBB", "is not a size"),
    ("1iB", "is not a size"), ("1GB; rm -rf /", "is not a size"), ("1\nGB", "is not a size"),
    ("0", "is 0 bytes"), ("0.0MB", "is 0 bytes"), ("1.5TB", "is over 1 TiB"),
    ("1099511627777", "is over 1 TiB"), ("9" * 17, "is not a size"), ("9" * 5000, "is not a size"),
])
def test_junk_sizes_are_one_line_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_model_size(text)
    line = e.value.message
    assert why in line and "\n" not in line and len(line) < 200, line
    assert line.startswith("--model-size ")


def test_no_flag_leaves_a_remote_or_unseen_model_unsized(tmp_path: Any) -> None:
    for path in ("s3://b/m.tar.gz", "oss://b/m/", "https://h/m.zip", str(tmp_path / "absent")):
        assert measure(path, None, {}) is None


def test_auto_on_a_local_path_missing_here_asks_for_the_size(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="does not exist here, so --model-size auto cannot "
                                          "size it; expected --model-size SIZE"):
        measure(str(tmp_path / "absent"), "auto", {})


def test_a_given_size_by_what_the_fetch_will_write() -> None:
    s = 100 * MIB
    assert measure("s3://b/m.tar.gz", "100MiB", {}) == Disk(s, s + DISK_MARGIN, "--model-size")
    assert measure("gs://b/models/m", "100MiB", {}).need_bytes == s + DISK_MARGIN  # type: ignore[union-attr]
    # a zip is spooled whole, then extracted beside it: its size (taken as the model's) twice
    assert measure("oss://b/m.ZIP?x=1", "100MiB", {}).need_bytes == 2 * s + DISK_MARGIN  # type: ignore[union-attr]


def test_a_local_directory_is_walked_and_served_in_place(tmp_path: Any) -> None:
    (tmp_path / "m" / "variables").mkdir(parents=True)
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"x" * 1000)
    (tmp_path / "m" / "variables" / "variables.data-00000-of-00001").write_bytes(b"y" * 5000)
    for flag in (None, "auto"):
        disk = measure(str(tmp_path / "m"), flag, {})
        assert disk == Disk(6000, 0, "a local directory")  # nothing fetched: no disk needed
    assert measure(f"file://{tmp_path}/m", "1G", {}) == Disk(GIB, 0, "--model-size")
    assert "is served in place: no disk" in Disk(6000, 0, "x").line()


def _model(tmp_path: Any, data: bytes) -> str:
    root = tmp_path / "model"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"pb" * 500)
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(data)
    return str(root)


def _tar(root: str, path: str, mode: str = "w:gz") -> None:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        tar.add(root, arcname=".")
        link = tarfile.TarInfo("./variables/again")  # a hard link: written as a copy
        link.type, link.linkname = tarfile.LNKTYPE, "./variables/variables.data-00000-of-00001"
        tar.addfile(link)


def _zip(root: str, path: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for base, _dirs, names in os.walk(root):
            for n in names:
                zf.write(os.path.join(base, n), os.path.relpath(os.path.join(base, n), root))


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def _fetch_on_a_disk_of(monkeypatch: Any, tmp_path: Any, url: str, capacity: int,
                        env: Optional[Dict[str, str]] = None) -> None:
    """Fetch ``url`` into a cache whose disk holds ``capacity`` bytes: free is what the cache
    does not use yet, as check_disk reads it."""
    cache = tmp_path / f"cache-{capacity}"
    cache.mkdir()

    def disk_usage(path: str) -> Usage:
        used = sum(os.path.getsize(os.path.join(b, n)) for b, _d, ns in os.walk(cache) for n in ns)
        return Usage(capacity, used, capacity - used)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    storage.fetch(url, Config.from_environ({**(env or {}), "MODEL_CACHE_DIR": str(cache)}))


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
@pytest.mark.parametrize("data", [b"\0" * 300_000, os.urandom(300_000)],
                         ids=["compressible", "incompressible"])
def test_a_local_archive_is_sized_from_its_headers_as_the_fetch_needs(
        kind: str, data: bytes, tmp_path: Any, monkeypatch: Any) -> None:
    root = _model(tmp_path, data)
    path = str(tmp_path / f"m.{kind}")
    _zip(root, path) if kind == "zip" else _tar(root, path, "w:gz" if kind == "tar.gz" else "w")
    disk = measure(path, None, {})
    assert disk is not None and disk == measure(path, "auto", {})
    archive = os.path.getsize(path)
    links = 0 if kind == "zip" else len(data)  # the tar's hard link is extracted as a copy
    assert disk.model_bytes == 1000 + len(data) + links
    written = disk.model_bytes if kind != "zip" else archive + disk.model_bytes
    assert disk.need_bytes == max(written, 2 * archive if kind == "zip" else archive) + DISK_MARGIN
    _fetch_on_a_disk_of(monkeypatch, tmp_path, path, disk.need_bytes)  # enough
    if kind == "zip" or archive > disk.model_bytes:  # a check the fetch makes before writing
        with pytest.raises(ModelUnavailable, match="not enough free disk"):
            _fetch_on_a_disk_of(monkeypatch, tmp_path, path, disk.need_bytes - 1)


def test_a_local_file_that_is_no_archive_or_is_corrupt_is_one_line(tmp_path: Any) -> None:
    (tmp_path / "m.bin").write_bytes(b"not an archive" * 100)
    with pytest.raises(ConfigError, match=re.escape("is a file but not a .tar, .tar.gz, .tgz or .zip")):
        measure(str(tmp_path / "m.bin"), None, {})
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        info = tarfile.TarInfo("saved_model.pb")
        info.size = 100_000
        tar.addfile(info, io.BytesIO(os.urandom(100_000)))
    (tmp_path / "cut.tar.gz").write_bytes(good.getvalue()[:5000])
    with pytest.raises(ConfigError) as e:
        measure(str(tmp_path / "cut.tar.gz"), None, {})
    assert "cannot read the archive to size it" in e.value.message and "\n" not in e.value.message
    disk = measure(str(tmp_path / "cut.tar.gz"), "1MiB", {})  # a given size needs no headers
    assert disk is not None and disk.model_bytes == MIB


class FakeSource:
    def __init__(self, info: Any = None, error: Any = None) -> None:
        self.info, self.error = info, error

    def stat(self) -> ObjectInfo:
        if self.error is not None:
            raise self.error
        return self.info  # type: ignore[no-any-return]


def test_auto_stats_a_remote_model(monkeypatch: Any) -> None:
    prefix = ObjectInfo("prefix", "v1", 5 * GIB, (("saved_model.pb", 1), ("v", 5 * GIB - 1)))
    monkeypatch.setattr(storage, "open_source", lambda url, config: FakeSource(prefix))
    disk = measure("s3://b/models/m/", "auto", {})
    assert disk == Disk(5 * GIB, 5 * GIB + DISK_MARGIN, "2 objects under the prefix")
    archive = ObjectInfo("object", "v1", GIB)
    monkeypatch.setattr(storage, "open_source", lambda url, config: FakeSource(archive))
    disk = measure("oss://b/m.tar.gz", "auto", {})
    assert disk is not None and disk.model_bytes == ARCHIVE_FACTOR * GIB
    assert disk.need_bytes == ARCHIVE_FACTOR * GIB + DISK_MARGIN and "estimated 2x" in disk.how
    disk = measure("oss://b/m.zip", "auto", {})
    assert disk is not None and disk.need_bytes == (1 + ARCHIVE_FACTOR) * GIB + DISK_MARGIN
    assert measure("oss://b/m.tar.gz", "3GiB", {}) == Disk(3 * GIB, 3 * GIB + DISK_MARGIN,
                                                           "--model-size")  # no stat


def test_auto_failures_are_one_line_without_secrets(monkeypatch: Any) -> None:
    gone = ModelUnavailable("cannot fetch s3://b/m.tar.gz: no such object")
    monkeypatch.setattr(storage, "open_source", lambda url, config: FakeSource(error=gone))
    with pytest.raises(ConfigError, match=re.escape("--model-size auto: cannot fetch "
                                                    "s3://b/m.tar.gz: no such object; expected "
                                                    "a reachable model_path")):
        measure("s3://b/m.tar.gz", "auto", {})
    leaky = RuntimeError("GET https://h/m.zip?X-Amz-Signature=s3cr3t failed")
    monkeypatch.setattr(storage, "open_source", lambda url, config: FakeSource(error=leaky))
    with pytest.raises(ConfigError) as e:
        measure("https://user:pw@h/m.zip?X-Amz-Signature=s3cr3t", "auto", {})
    assert e.value.message == ("--model-size auto: cannot stat https://h/m.zip (RuntimeError); "
                               "expected a reachable model_path or --model-size SIZE")
