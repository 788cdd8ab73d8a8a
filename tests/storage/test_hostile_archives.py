"""Fast lane: hostile and broken model archives fetched from a local file (``MODEL_PATH`` a
local ``.tar.gz``/``.zip``), through the same fetch, extraction, cache and refusal memory as
any store: traversal, absolute paths, links, devices and FIFOs, bombs, too many members,
corrupt and truncated archives.  Each is a one-line 503 naming the archive, nothing escapes
the cache, and nothing partial is cached.  What needs a store's server (a download cut
mid-stream, GETs counted, ranged reads) stays in test_fetch/test_ranged."""

from __future__ import annotations

import io
import os
import re
import tarfile
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from tfserverless import storage
from tfserverless.config import Config
from tfserverless.errors import ModelUnavailable
from tfserverless.storage.archive import ArchiveRefused

from . import archives


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: Any) -> str:
    """A SavedModel's layout without TensorFlow: storage only looks for saved_model.pb.
    Big enough (~300 KB, part incompressible) that a flipped or cut byte lands in data."""
    root = tmp_path_factory.mktemp("fake") / "model"
    rng = np.random.RandomState(0)
    files = {"saved_model.pb": b"graph " * 8000,
             "variables/variables.index": rng.randint(0, 4, 4000, dtype=np.uint8).tobytes(),
             "variables/variables.data-00000-of-00001": rng.bytes(250_000),
             "assets/vocab.txt": b"\n".join(b"word%d" % i for i in range(2000))}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return str(root)


def cfg(tmp_path: Any, path: str, extra: Optional[Dict[str, str]] = None) -> Config:
    env = {"MODEL_PATH": path, "MODEL_CACHE_DIR": str(tmp_path / "cache")}
    env.update(extra or {})
    return Config.from_environ(env)


def local(tmp_path: Any, name: str, data: bytes) -> str:
    path = tmp_path / "store" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def refused(tmp_path: Any, name: str, data: bytes, match: str,
            extra: Optional[Dict[str, str]] = None, *, named: bool = True) -> ModelUnavailable:
    """Fetch ``data`` saved as ``name``: a one-line 503 naming it, whose words after the name
    match ``match`` (the path itself is left out: pytest names tmp_path after the test)."""
    path = local(tmp_path, name, data)
    with pytest.raises(ModelUnavailable) as e:
        storage.fetch_model(cfg(tmp_path, path, extra))
    msg = e.value.message
    assert e.value.status == 503 and "\n" not in msg, msg
    assert path in msg or not named, msg
    assert re.search(match, name + msg.split(path, 1)[1] if named else msg), msg
    return e.value


def cached_versions(tmp_path: Any) -> List[str]:
    root = tmp_path / "cache"
    return [str(p) for p in root.rglob("v-*")] if root.exists() else []


def nothing_escaped(tmp_path: Any) -> None:
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("escape.txt"))
    assert not os.path.exists("/tmp/tfs-absolute-escape.txt")
    assert not os.path.exists("/abs.txt")
    assert cached_versions(tmp_path) == []


HOSTILE = ["dotdot", "absolute", "symlink", "symlink_up", "hardlink", "device", "fifo"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_tar_refused(tmp_path: Any, model_dir: str, kind: str) -> None:
    refused(tmp_path, "evil.tgz", archives.hostile_tar(kind, model_dir), "refused")
    nothing_escaped(tmp_path)


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt"])
def test_hostile_zip_refused(tmp_path: Any, model_dir: str, name: str) -> None:
    refused(tmp_path, "evil.zip", archives.hostile_zip(name, model_dir), "refused")
    nothing_escaped(tmp_path)


def test_zip_symlink_refused(tmp_path: Any, model_dir: str) -> None:
    refused(tmp_path, "evil.zip", archives.symlink_zip(model_dir), "symlink; refused")
    nothing_escaped(tmp_path)


def written(tmp_path: Any) -> int:
    """Bytes of every file left under the cache (refusal markers aside)."""
    return sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*")
               if p.is_file() and "refused-" not in p.name)


@pytest.mark.parametrize("kind", ["tgz", "zip"])
def test_bombs_refused(tmp_path: Any, kind: str) -> None:
    data = archives.bomb_tar(20 << 20) if kind == "tgz" else archives.bomb_zip(20 << 20)
    assert len(data) < 100_000  # 20 MiB from under 100 KB
    refused(tmp_path, f"bomb.{kind}", data, "MAX_EXTRACT_BYTES", {"MAX_EXTRACT_BYTES": "4MiB"})
    assert written(tmp_path) == 0 and cached_versions(tmp_path) == []


def test_bomb_refused_by_declared_size_before_writing(tmp_path: Any) -> None:
    refused(tmp_path, "bomb.tgz", archives.bomb_tar(64 << 20), "declares more than 4194304 bytes",
            {"MAX_EXTRACT_BYTES": "4MiB"})
    assert written(tmp_path) == 0  # not a byte of it was written


def test_member_count_bounded(tmp_path: Any) -> None:
    refused(tmp_path, "many.tgz", archives.many_members_tar(50), "more than 20 members",
            {"MAX_ARCHIVE_MEMBERS": "20"})
    assert cached_versions(tmp_path) == []


def test_truncated_corrupt_and_not_archives(tmp_path: Any, model_dir: str) -> None:
    data = archives.tar_of(model_dir)
    e = refused(tmp_path, "t.tgz", data[: len(data) // 2], "truncated")
    assert not isinstance(e, ArchiveRefused)  # retried later, not remembered
    refused(tmp_path, "c.tar.gz", b"\x1f\x8b" + os.urandom(5000), r"c\.tar\.gz: corrupt archive")
    refused(tmp_path, "plain.bin", os.urandom(1000), r"not a \.tar")
    e = refused(tmp_path, "empty.tgz", archives.many_members_tar(3), r"expected a SavedModel")
    assert e.message.startswith("no saved_model.pb found under ")  # the archive, not a tmp dir
    assert cached_versions(tmp_path) == []
    # nothing half-written was kept: the whole archive at the same path now fetches cleanly
    got = storage.fetch_model(cfg(tmp_path, local(tmp_path, "t.tgz", data)))
    assert not got.cached and archives.tree(got.path) == archives.tree(model_dir)


def _flip(data: bytes, at: int, n: int = 64) -> bytes:
    return data[:at] + bytes(b ^ 0xA5 for b in data[at:at + n]) + data[at + n:]


def test_corrupt_archives_are_never_cached(tmp_path: Any, model_dir: str) -> None:
    """A .tar.gz with 64 bytes flipped used to extract with files missing and be cached as a
    verified model: gzip CRC and length, zip CRCs and the tar end marker are now checked
    before anything is renamed into place."""
    tgz = archives.tar_of(model_dir)
    refused(tmp_path, "flip.tar.gz", _flip(tgz, len(tgz) // 2), r"flip\.tar\.gz: corrupt archive")
    zipped = archives.zip_of(model_dir)
    refused(tmp_path, "flip.zip", _flip(zipped, len(zipped) // 3), r"flip\.zip: corrupt archive")
    # a plain tar cut at a member boundary lacks only its end-of-archive marker
    plain = archives.tar_of(model_dir, mode="w")
    with tarfile.open(fileobj=io.BytesIO(plain)) as t:
        last = t.getmembers()[-1]
    cut = last.offset_data + ((last.size + 511) // 512) * 512
    refused(tmp_path, "cut.tar", plain[:cut], r"cut\.tar: truncated archive.*end-of-archive")
    assert cached_versions(tmp_path) == []
    # with the archive gone, nothing partial is served from the cache
    os.unlink(tmp_path / "store" / "flip.tar.gz")
    with pytest.raises(ModelUnavailable, match="no such file"):
        storage.fetch_model(cfg(tmp_path, str(tmp_path / "store" / "flip.tar.gz")))


def test_a_refused_version_is_remembered_until_the_archive_changes(tmp_path: Any,
                                                                  model_dir: str) -> None:
    """The refusal is kept beside the cache: the holder's retries get the same reason at once
    (the GETs it saves are counted against a real server in test_fetch)."""
    conf = {"MAX_ARCHIVE_MEMBERS": "20"}
    refused(tmp_path, "many.tgz", archives.many_members_tar(50), "more than 20 members", conf)
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match=r"more than 20 members.*refused before"):
            storage.fetch_model(cfg(tmp_path, str(tmp_path / "store" / "many.tgz"), conf))
    path = local(tmp_path, "many.tgz", archives.tar_of(model_dir))  # fixed: a new version
    got = storage.fetch_model(cfg(tmp_path, path, conf))
    assert archives.tree(got.path) == archives.tree(model_dir)
