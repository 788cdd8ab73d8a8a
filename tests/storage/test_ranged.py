"""Parallel ranged reads against real stores on loopback (moto's S3 for s3:// and oss://, the
GCS emulator, http.server with ranges): parts reassembled bit-exact around part boundaries,
a part that fails mid-stream retried alone, an object replaced mid-read refused with nothing
cached, a server that ignores Range, prefixes of many small objects, hostile archives."""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any, Dict, List

import numpy as np
import pytest

from tfserverless import storage
from tfserverless.errors import ModelUnavailable
from tfserverless.storage.base import ObjectChanged
from tfserverless.storage.ranges import Ordered, Settings, Stats
from tfserverless.storage.registry import open_source

from ..conftest import FileServer, GcsEmulator, MotoServer
from . import archives
from .test_fetch import cfg, put, same_tree

PART = 64 << 10
RANGED = {"FETCH_PART_BYTES": "64KiB", "FETCH_CONNECTIONS": "4"}
SIZES = [1, PART - 1, PART, PART + 1, 5 * PART + 3]


def noise(n: int, seed: int = 0) -> bytes:
    return np.random.RandomState(seed).randint(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def big_model(models: Dict[str, str], tmp_path_factory: Any) -> str:
    """The multi model plus ~1 MB of incompressible bytes: an archive of ~17 parts."""
    root = str(tmp_path_factory.mktemp("big") / "model")
    shutil.copytree(models["multi"], root)
    with open(os.path.join(root, "variables", "extra.bin"), "wb") as f:
        f.write(noise(1 << 20, 1))
    return root


def cached_versions(tmp_path: Any) -> List[str]:
    cache = str(tmp_path / "cache")
    return [n for d in os.listdir(cache) for n in os.listdir(os.path.join(cache, d))
            if n.startswith("v-")] if os.path.isdir(cache) else []


# --- reassembly ----------------------------------------------------------------------------


def read_all(source: Any, size: int, connections: int = 3) -> bytes:
    stream = Ordered(source, "", size, Settings(connections, PART), Stats())
    try:
        out = []
        while True:
            chunk = stream.read(10_000)  # not a divisor of the part: reads straddle parts
            if not chunk:
                return b"".join(out)
            out.append(chunk)
    finally:
        stream.close()


@pytest.mark.parametrize("scheme", ["s3", "oss"])
def test_parts_reassemble_bit_exact_around_part_boundaries(moto: MotoServer, bucket: str,
                                                           tmp_path: Any, scheme: str) -> None:
    for i, size in enumerate(SIZES):
        data = noise(size, i)
        put(moto, bucket, f"o{i}", data)
        source = open_source(f"{scheme}://{bucket}/o{i}", cfg(tmp_path, "x", moto.env()))
        assert source.stat().size == size
        assert read_all(source, size) == data, size


def test_gcs_and_http_parts_reassemble_bit_exact(gcs: GcsEmulator, files: FileServer,
                                                 tmp_path: Any) -> None:
    bkt = gcs.client().create_bucket("ranged-" + os.urandom(4).hex())
    for i, size in enumerate(SIZES):
        data = noise(size, i)
        bkt.blob(f"o{i}").upload_from_string(data)
        files.files[f"/o{i}"] = data
        for url, env in ((f"gs://{bkt.name}/o{i}", gcs.env()), (f"{files.url}/o{i}", {})):
            source = open_source(url, cfg(tmp_path, "x", env))
            assert source.stat().size == size and source.supports_ranges()
            assert read_all(source, size) == data, (url, size)


@pytest.mark.parametrize("scheme", ["s3", "oss", "http"])
def test_an_archive_is_extracted_from_parallel_parts(moto: MotoServer, bucket: str,
                                                     files: FileServer, tmp_path: Any,
                                                     big_model: str, scheme: str) -> None:
    blob = archives.tar_of(big_model)
    assert len(blob) > 10 * PART
    if scheme == "http":
        files.files["/m.tar.gz"] = blob
        url, env = files.url + "/m.tar.gz", {}
    else:
        put(moto, bucket, "m.tar.gz", blob)
        url, env = f"{scheme}://{bucket}/m.tar.gz", moto.env()
    got = storage.fetch_model(cfg(tmp_path, url, {**env, **RANGED}))
    same_tree(got.path, big_model)
    assert got.connections == 4 and got.retried == 0
    if scheme == "http":
        assert files.ranged_gets["/m.tar.gz"] == -(-len(blob) // PART)


def test_a_zip_is_spooled_from_parallel_parts(files: FileServer, tmp_path: Any,
                                              big_model: str) -> None:
    files.files["/m.zip"] = archives.zip_of(big_model)
    got = storage.fetch_model(cfg(tmp_path, files.url + "/m.zip", RANGED))
    same_tree(got.path, big_model)
    assert files.ranged_gets["/m.zip"] > 2


@pytest.mark.parametrize("scheme", ["s3", "oss"])
def test_a_prefix_of_many_small_objects_and_large_ones(moto: MotoServer, bucket: str,
                                                       tmp_path: Any, big_model: str,
                                                       scheme: str) -> None:
    want = archives.tree(big_model)
    want.update({f"assets/small-{i}.txt": noise(i, i) for i in range(120)})  # 0..119 bytes
    for rel, data in want.items():
        put(moto, bucket, "p/" + rel, data)
    got = storage.fetch_model(cfg(tmp_path, f"{scheme}://{bucket}/p/", {**moto.env(), **RANGED}))
    assert archives.tree(got.path) == want
    assert got.connections == 4


# --- faults ----------------------------------------------------------------------------------


def test_a_part_cut_mid_stream_is_retried_alone(files: FileServer, tmp_path: Any,
                                                big_model: str) -> None:
    blob = archives.tar_of(big_model)
    files.files["/m.tar.gz"] = blob
    files.break_ranged["/m.tar.gz"] = [2, 5]  # two GETs drop half-way
    got = storage.fetch_model(cfg(tmp_path, files.url + "/m.tar.gz", RANGED))
    same_tree(got.path, big_model)
    parts = -(-len(blob) // PART)
    assert got.retried == 2 and files.ranged_gets["/m.tar.gz"] == parts + 2


def test_a_part_that_keeps_failing_is_a_503_and_nothing_is_cached(files: FileServer,
                                                                  tmp_path: Any,
                                                                  big_model: str) -> None:
    files.files["/m.tar.gz"] = archives.tar_of(big_model)
    files.break_ranged["/m.tar.gz"] = list(range(1, 200))  # every ranged GET is cut
    with pytest.raises(ModelUnavailable) as e:
        storage.fetch_model(cfg(tmp_path, files.url + "/m.tar.gz", RANGED))
    assert ("ended after" in e.value.message or "truncated" in e.value.message), e.value.message
    assert "\n" not in e.value.message
    assert cached_versions(tmp_path) == []


def test_an_object_replaced_mid_read_is_refused_with_nothing_cached(files: FileServer,
                                                                    tmp_path: Any,
                                                                    big_model: str,
                                                                    models: Dict[str, str]) -> None:
    files.files["/m.tar.gz"] = archives.tar_of(big_model)
    swapped = threading.Event()

    def replace(path: str) -> None:
        if not swapped.is_set():  # after the first part: every later one asks If-Match
            swapped.set()
            files.files[path] = archives.tar_of(models["multi"]) + b"\0" * 1024

    files.after_ranged = replace
    with pytest.raises(ObjectChanged) as e:
        storage.fetch_model(cfg(tmp_path, files.url + "/m.tar.gz", RANGED))
    assert "changed while it was being read" in e.value.message and e.value.status == 503
    assert cached_versions(tmp_path) == []
    files.after_ranged = None
    got = storage.fetch_model(cfg(tmp_path, files.url + "/m.tar.gz", RANGED))  # the retry
    same_tree(got.path, models["multi"])


@pytest.mark.parametrize("scheme", ["s3", "oss"])
def test_every_part_is_pinned_to_the_version_stat_saw(moto: MotoServer, bucket: str,
                                                      tmp_path: Any, scheme: str) -> None:
    put(moto, bucket, "o", noise(3 * PART))
    source = open_source(f"{scheme}://{bucket}/o", cfg(tmp_path, "x", moto.env()))
    source.stat()
    source.read_range("", 0, PART).close()  # type: ignore[attr-defined]
    put(moto, bucket, "o", noise(3 * PART, 9))  # replaced between two parts
    with pytest.raises(ObjectChanged):
        source.read_range("", PART, 2 * PART).read()  # type: ignore[attr-defined]


def test_a_server_that_ignores_ranges_is_read_as_one_stream(files: FileServer, tmp_path: Any,
                                                            big_model: str) -> None:
    files.files["/m.tar.gz"] = archives.tar_of(big_model)
    files.ignore_ranges = True  # says Accept-Ranges, then answers 200 with everything
    got = storage.fetch_model(cfg(tmp_path, files.url + "/m.tar.gz", RANGED))
    same_tree(got.path, big_model)
    assert got.connections == 1
    files.ranges, files.ignore_ranges = False, False  # says nothing of ranges: never asked
    files.gets.clear()
    got = storage.fetch_model(cfg(tmp_path / "2", files.url + "/m.tar.gz", RANGED))
    same_tree(got.path, big_model)
    assert files.gets["/m.tar.gz"] == 1 and got.connections == 1


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink_up"])
def test_hostile_archives_are_refused_over_ranged_reads_too(files: FileServer, tmp_path: Any,
                                                            big_model: str, kind: str) -> None:
    blob = archives.hostile_tar(kind, big_model)
    assert len(blob) > 2 * PART
    files.files["/h.tar.gz"] = blob
    with pytest.raises(ModelUnavailable):
        storage.fetch_model(cfg(tmp_path, files.url + "/h.tar.gz", RANGED))
    assert cached_versions(tmp_path) == [] and files.ranged_gets.get("/h.tar.gz", 0) > 0


def test_a_prefix_of_more_objects_than_open_files_allowed(moto: MotoServer, bucket: str,
                                                          tmp_path: Any, model_dir_small: str,
                                                          ) -> None:
    import resource

    want = archives.tree(model_dir_small)
    want.update({f"assets/f{i}": b"%d" % i for i in range(400)})
    for rel, data in want.items():
        put(moto, bucket, "many/" + rel, data)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 150, hard))  # far fewer than objects
    try:
        got = storage.fetch_model(cfg(tmp_path, f"s3://{bucket}/many/", {**moto.env(), **RANGED}))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert archives.tree(got.path) == want


def test_two_keys_for_one_file_are_refused(moto: MotoServer, bucket: str, tmp_path: Any,
                                           model_dir_small: str) -> None:
    for rel, data in archives.tree(model_dir_small).items():
        put(moto, bucket, "dup/" + rel, data)
    put(moto, bucket, "dup/variables//v", b"A" * 300)
    put(moto, bucket, "dup/variables/v", b"B" * 200)
    with pytest.raises(ModelUnavailable) as e:
        storage.fetch_model(cfg(tmp_path, f"s3://{bucket}/dup/", {**moto.env(), **RANGED}))
    assert "are both the file" in e.value.message
    assert cached_versions(tmp_path) == []


@pytest.fixture(scope="module")
def model_dir_small(models: Dict[str, str]) -> str:
    return models["multi"]
