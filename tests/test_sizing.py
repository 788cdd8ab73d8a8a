"""WORKERS from the model's size and the memory limit, fast lane: fake cgroup files, injected
environments, fake sources; the rule, the line it logs, the refusal, the stat that fails."""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List

import pytest

from tfserverless import cgroup, sizing
from tfserverless.config import Config
from tfserverless.errors import ConfigError, ModelUnavailable
from tfserverless.sizing import ModelSize, choose
from tfserverless.storage.base import ObjectInfo, Source

GiB, MB = 1 << 30, 10**6


@pytest.mark.parametrize("control, expected", [
    ({"memory.max": "2147483648\n"}, 2 * GiB),
    ({"memory.max": "max\n"}, 0),
    ({"memory/memory.limit_in_bytes": "1073741824\n"}, GiB),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0),  # v1's "no limit"
    ({}, 0),
])
def test_the_cgroup_memory_limit(tmp_path: Any, control: Dict[str, str], expected: int) -> None:
    for name, text in control.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup.memory_limit(str(tmp_path)) == expected


def test_the_platforms_memory_and_the_lowest_limit_wins(tmp_path: Any) -> None:
    assert Config.from_environ({}).platform_memory == 0
    assert Config.from_environ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"}).platform_memory == 2 * GiB
    fc = Config.from_environ({"FC_FUNCTION_MEMORY_SIZE": "3072"})
    assert fc.platform_memory == 3 * GiB
    with pytest.raises(ConfigError) as e:
        Config.from_environ({"FC_FUNCTION_MEMORY_SIZE": "lots"})
    assert "FC_FUNCTION_MEMORY_SIZE" in e.value.message and "'lots'" in e.value.message
    assert sizing.memory_limit(fc, str(tmp_path)) == 3 * GiB  # no cgroup files: the platform's
    (tmp_path / "memory.max").write_text(str(GiB))
    assert sizing.memory_limit(fc, str(tmp_path)) == GiB
    assert sizing.memory_limit(Config(), str(tmp_path)) == GiB


def test_a_local_model_is_the_sum_of_its_files_counted_up_to_a_bound(tmp_path: Any,
                                                                   monkeypatch: Any) -> None:
    for version, size in (("1", 5000), ("2", 300)):  # TF Serving's layout: the highest serves
        (tmp_path / version / "variables").mkdir(parents=True)
        (tmp_path / version / "saved_model.pb").write_bytes(b"x" * 100)
        (tmp_path / version / "variables" / "variables.data-00000-of-00001").write_bytes(
            b"x" * size)
    assert sizing.model_bytes(str(tmp_path)) == ModelSize(400, "")
    monkeypatch.setattr(sizing, "MAX_ENTRIES", 1)
    assert sizing.model_bytes(str(tmp_path / "2")).note == "first 1 files"
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"x" * 777)
    assert sizing.model_bytes(str(archive)) == ModelSize(777, "compressed")


class FakeSource(Source):
    def __init__(self, info: Any) -> None:
        self.info, self.stats = info, 0

    def stat(self) -> ObjectInfo:
        self.stats += 1
        if isinstance(self.info, Exception):
            raise self.info
        assert isinstance(self.info, ObjectInfo)
        return self.info


@pytest.fixture
def store(monkeypatch: Any) -> Iterator[List[FakeSource]]:
    """``open_source`` answers with the fake source appended here."""
    sources: List[FakeSource] = []
    monkeypatch.setattr("tfserverless.storage.open_source", lambda url, config: sources[-1])
    yield sources


@pytest.fixture
def lines() -> Iterator[List[str]]:
    got: List[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(f"{record.levelname} {record.getMessage()}")  # type: ignore[method-assign]
    logger = logging.getLogger("tfserverless.server")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield got
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_remote_model_is_one_stat_a_prefix_exact_an_archive_a_floor(store: List[FakeSource]) -> None:
    store.append(FakeSource(ObjectInfo("prefix", "v", 5 * MB)))
    assert sizing.model_bytes("s3://b/model/") == ModelSize(5 * MB, "")
    store.append(FakeSource(ObjectInfo("object", "v", 7 * MB)))
    assert sizing.model_bytes("s3://b/model.tar.gz") == ModelSize(7 * MB, "compressed")
    assert [s.stats for s in store] == [1, 1]


def unset(cores: int) -> Config:
    return Config(model_path="s3://b/m/", workers=cores)


def test_workers_unset_are_the_cores_that_fit_the_memory_limit() -> None:
    small = ModelSize(50 * MB, "")
    assert choose(unset(4), 4, 0, small).workers == 4  # no limit known: one per core
    # (2 GiB - 64 MB - 64 MiB) / (600 MB + 1.1 x 50 MB) -> 3 of the 4 cores
    assert choose(unset(4), 4, 2 * GiB, small) == (
        3, "workers: 3 (4 cores; model 50 MB, ~655 MB a worker; memory limit 2.0 GiB)", False)
    assert choose(unset(2), 2, 8 * GiB, small).workers == 2  # the cores bound it
    assert choose(unset(4), 4, 2 * GiB, None, "oss://b/m: unreachable") == (
        4, "workers: 4 (4 cores; model size unknown: oss://b/m: unreachable; memory limit "
           "2.0 GiB)", True)


def test_a_large_model_gets_one_worker_and_one_that_cannot_fit_is_warned_of() -> None:
    big = ModelSize(GiB, "")
    assert choose(unset(2), 2, 0, big) == (
        1, "workers: 1 (2 cores; model 1.07 GB, ~1.78 GB a worker; one worker serves a model "
           "over 100 MB as fast as more; memory limit unknown)", False)
    assert choose(unset(2), 2, 2 * GiB, big).workers == 1
    got = choose(unset(2), 2, GiB, ModelSize(GiB, "compressed"))
    assert got.workers == 1 and got.warn
    assert "model 1.07 GB (compressed: a floor)" in got.line
    assert got.line.endswith("memory limit 1.0 GiB): not even one worker fits; starting one, "
                             "which the OOM killer may stop")


def test_workers_set_stay_unless_their_copies_cannot_fit() -> None:
    four = Config(workers=4, workers_set=True)
    assert choose(four, 2, 0, ModelSize(GiB, "")).workers == 4  # no limit: as set
    assert choose(four, 2, 16 * GiB, ModelSize(GiB, "")).workers == 4  # set: no size rule
    with pytest.raises(ConfigError) as e:
        choose(four, 2, 4 * GiB, ModelSize(GiB, ""))
    assert e.value.message == ("WORKERS=4: 4 copies of a 1.07 GB model need ~7.26 GB; the "
                               "memory limit is 4.0 GiB; expected WORKERS<=2 or more memory")
    one = choose(Config(workers=1, workers_set=True), 2, GiB, ModelSize(GiB, ""))
    assert one.workers == 1 and one.warn  # one worker is never refused


def test_workers_logs_one_line_and_stats_only_when_it_can_change_anything(
        tmp_path: Any, store: List[FakeSource], lines: List[str]) -> None:
    root = str(tmp_path)  # no cgroup files: no limit
    store.append(FakeSource(AssertionError("no stat: nothing to decide")))
    assert sizing.workers(Config(model_path="s3://b/m/", workers=2, workers_set=True), root) == 2
    assert sizing.workers(unset(1), root) == 1  # one core: nothing to lower
    assert store[-1].stats == 0
    store.append(FakeSource(ObjectInfo("prefix", "v", 2 * GiB)))
    assert sizing.workers(unset(2), root) == 1  # a large model: one worker
    (tmp_path / "memory.max").write_text(str(8 * GiB))
    store.append(FakeSource(AssertionError("no stat: one worker is never lowered or refused")))
    assert sizing.workers(Config(model_path="s3://b/m/", workers=1, workers_set=True), root) == 1
    store.append(FakeSource(ObjectInfo("prefix", "v", 50 * MB)))
    assert sizing.workers(Config(model_path="s3://b/m/", workers=2, workers_set=True), root) == 2
    assert [s.stats for s in store] == [0, 1, 0, 1]
    assert lines == [
        "INFO workers: 2 (WORKERS=2; memory limit unknown)",
        "INFO workers: 1 (1 core; memory limit unknown)",
        "INFO workers: 1 (2 cores; model 2.15 GB, ~2.96 GB a worker; one worker serves a model "
        "over 100 MB as fast as more; memory limit unknown)",
        "INFO workers: 1 (WORKERS=1; memory limit 8.0 GiB)",
        "INFO workers: 2 (WORKERS=2; model 50 MB, ~655 MB a worker; memory limit 8.0 GiB)"]


def test_a_failing_stat_falls_back_to_the_cores_in_one_line(
        tmp_path: Any, store: List[FakeSource], lines: List[str]) -> None:
    (tmp_path / "memory.max").write_text(str(2 * GiB))
    store.append(FakeSource(ModelUnavailable("model s3://b/m/ is unavailable: NoSuchBucket")))
    assert sizing.workers(unset(2), str(tmp_path)) == 2
    store.append(FakeSource(RuntimeError("https://b.s3/?X-Amz-Signature=secret")))
    assert sizing.workers(unset(2), str(tmp_path)) == 2
    assert lines == [
        "WARNING workers: 2 (2 cores; model size unknown: model s3://b/m/ is unavailable: "
        "NoSuchBucket; memory limit 2.0 GiB)",
        "WARNING workers: 2 (2 cores; model size unknown: RuntimeError; memory limit 2.0 GiB)"]


def worker_pids(pid: int) -> List[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.slow
def test_serve_starts_the_workers_that_fit_and_refuses_workers_that_cannot(
        start_server: Any, sample_model: str) -> None:
    from tfserverless.config import default_workers

    cores = default_workers()
    size = sizing.model_bytes(sample_model)
    for mb in (1024, 4096):  # the platform's memory (this machine's cgroup's, if lower)
        config = Config(workers=cores, platform_memory=mb << 20)
        limit = sizing.memory_limit(config)
        expected = max(1, min(cores, sizing.fitting(config, limit, size.nbytes)))
        if limit == mb << 20:  # 1 GiB holds one MNIST worker, 4 GiB two
            assert expected == min(cores, 1 if mb == 1024 else 2)
        # tfserverless serve; functions-framework, which reads the WORKERS we set
        for target in ("app", "predict") if mb == 1024 else ("app",):
            s = start_server({"MODEL_PATH": sample_model, "WORKERS": "",
                              "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(mb)}, target=target)
            assert len(worker_pids(s.proc.pid)) == expected
            line = (f"workers: {expected} ({cores} core{'s' * (cores != 1)}; model "
                    f"{sizing.gb(size.nbytes)}")
            assert line in s.log(), s.log()[-2000:]
    for target in ("app", "predict"):
        s = start_server({"MODEL_PATH": sample_model, "WORKERS": "2",
                          "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}, wait_ready=False,
                         target=target)
        assert s.proc.wait(120) == 2
        out = s.log().strip().splitlines()
        assert out == [f"tfserverless: configuration error: WORKERS=2: 2 copies of a "
                       f"{sizing.gb(size.nbytes)} model need ~1.33 GB; the memory limit "
                       "is 1.0 GiB; expected WORKERS<=1 or more memory"], out


def test_a_tree_is_sized_as_a_load_reads_it(tmp_path: Any) -> None:
    """Links followed (a snapshot of links to blobs), each file once, a dangling link nothing;
    render's local walk is the same one and no longer fails on it."""
    from tfserverless.tools import modelsize
    blob = tmp_path / "blobs" / "b1"
    blob.parent.mkdir()
    blob.write_bytes(b"x" * 5000)
    snap = tmp_path / "snap"
    (snap / "variables").mkdir(parents=True)
    (snap / "saved_model.pb").write_bytes(b"y" * 100)
    (snap / "variables" / "v.data").symlink_to(blob)
    (snap / "variables" / "again").symlink_to(blob)
    (snap / "variables" / "gone").symlink_to(tmp_path / "missing")
    assert sizing.tree_bytes(str(snap)) == sizing.ModelSize(5100, "")
    disk = modelsize.measure(str(snap), None, {})
    assert disk is not None and disk.model_bytes == 5100
