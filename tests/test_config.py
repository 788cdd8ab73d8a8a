"""Config, fast lane: batching and worker settings, the CPU quota behind WORKERS' default."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from tfserverless.config import Config, detect_platform, serve_port
from tfserverless.errors import ConfigError
from tfserverless.serving.admission import limits_for


@pytest.mark.parametrize("control, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: two workers
    ({"cpu.max": "max 100000\n"}, 0),
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 0),
    ({}, 0),
])
def test_cpu_quota_bounds_the_default_workers(tmp_path: Any, control: Dict[str, str],
                                               expected: int) -> None:
    from tfserverless.cgroup import cpu_quota
    from tfserverless.config import default_workers

    for name, text in control.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(str(tmp_path)) == expected
    assert 1 <= default_workers(str(tmp_path)) <= max(1, expected or 1024)


def test_batching_and_workers_settings() -> None:
    cfg = Config.from_environ({"RPC_BATCHING": "true", "RPC_MAX_BATCH_SIZE": "8",
                               "RPC_MAX_BATCH_TIMEOUT": "20", "WORKERS": "3",
                               "RPC_WORKER_THREADS": "2"})
    assert cfg.rpc_batching and cfg.rpc_max_batch_size == 8 and cfg.workers == 3
    assert limits_for(cfg).workers == 16  # 2 calls of up to 8 requests
    for key, value in (("RPC_BATCHING", "maybe"), ("WORKERS", "0"), ("RPC_MAX_BATCH_SIZE", "x"),
                       ("SERVER_TIMING", "2"), ("RPC_MAX_BATCH_SIZE", "100000"),
                       ("RPC_WORKER_THREADS", "5000"), ("WORKERS", "100000")):
        with pytest.raises(ConfigError) as e:
            Config.from_environ({key: value})
        assert key in e.value.message and value in e.value.message


def test_header_read_timeout_is_seconds_with_a_default_and_0_for_off() -> None:
    from tfserverless.config import header_read_timeout

    assert Config.from_environ({}).header_read_timeout == 10.0
    assert Config.from_environ({"HEADER_READ_TIMEOUT": " "}).header_read_timeout == 10.0
    assert Config.from_environ({"HEADER_READ_TIMEOUT": "2.5"}).header_read_timeout == 2.5
    assert Config.from_environ({"HEADER_READ_TIMEOUT": "0"}).header_read_timeout == 0.0
    assert header_read_timeout({"HEADER_READ_TIMEOUT": "1"}) == 1.0  # what the worker reads
    for value in ("soon", "-1", "nan", "10s"):
        with pytest.raises(ConfigError) as e:
            Config.from_environ({"HEADER_READ_TIMEOUT": value})
        assert "HEADER_READ_TIMEOUT" in e.value.message and repr(value) in e.value.message


def test_every_default_is_written_once_in_settings() -> None:
    from tfserverless.config import SETTINGS

    built, read = Config(), Config.from_environ({}, workers=1)
    for s in SETTINGS:
        assert getattr(built, s.attr) == getattr(read, s.attr), s.key
        if s.default not in (None, ""):
            assert getattr(built, s.attr) == s.default, s.key
    assert len({s.key for s in SETTINGS}) == len({s.attr for s in SETTINGS}) == len(SETTINGS)


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="max_body_byte"):
        Config(max_body_byte=1)


@pytest.mark.parametrize("value", ["nan", "NaN", "soon"])
def test_seconds_that_are_not_a_number_say_so(value: str) -> None:
    with pytest.raises(ConfigError, match="is not a number; expected seconds"):
        Config.from_environ({"BODY_READ_TIMEOUT": value})


# --- SageMaker: told by the image's entrypoint (a bare `serve`) or SAGEMAKER_BIND_TO_PORT ------


@pytest.mark.parametrize("environ, platform", [
    ({"TFSERVERLESS_PLATFORM": "sagemaker"}, "sagemaker"),
    ({"SAGEMAKER_BIND_TO_PORT": "9090"}, "sagemaker"),
    ({"TFSERVERLESS_PLATFORM": "Local", "SAGEMAKER_BIND_TO_PORT": "9090"}, "local"),
    ({"K_SERVICE": "x"}, "cloudrun"),
    ({}, "local"),
])
def test_platform_is_told_from_the_environment(environ: Dict[str, str], platform: str) -> None:
    assert detect_platform(environ) == platform


def test_sagemaker_reads_the_model_where_sagemaker_unpacks_it() -> None:
    assert Config.from_environ({"TFSERVERLESS_PLATFORM": "sagemaker"}).model_path == "/opt/ml/model"
    assert Config.from_environ({"TFSERVERLESS_PLATFORM": "sagemaker",
                                "MODEL_PATH": "s3://b/m.tar.gz"}).model_path == "s3://b/m.tar.gz"
    assert Config.from_environ({}).model_path == ""  # elsewhere: no default, a one-line refusal


@pytest.mark.parametrize("environ, port", [
    ({"TFSERVERLESS_PLATFORM": "sagemaker"}, 8080),
    ({"TFSERVERLESS_PLATFORM": "sagemaker", "PORT": "9000"}, 8080),  # SageMaker routes 8080
    ({"SAGEMAKER_BIND_TO_PORT": "9090", "PORT": "9000"}, 9090),
    ({"PORT": "9000"}, 9000),
    ({}, 8080),
])
def test_serve_port(environ: Dict[str, str], port: int) -> None:
    assert serve_port(environ) == port


@pytest.mark.parametrize("environ, message", [
    ({"TFSERVERLESS_PLATFORM": "lambda"}, "TFSERVERLESS_PLATFORM='lambda' is not a platform"),
    ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT='http'"),
    ({"PORT": "70000"}, "PORT='70000' is not a port"),
])
def test_bad_platform_settings_are_one_line(environ: Dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        serve_port(environ)
    assert message in e.value.message and "\n" not in e.value.message
