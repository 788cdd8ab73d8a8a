"""The startup line, the warm-up's result line and the third-party quieting, as pure functions
(the server that logs them: tests/serving/test_startup_log.py)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, Optional

import pytest

from tfserverless import logs, startup
from tfserverless.config import Config
from tfserverless.serving.warmup import result_line

WORKERS = "workers: 2 (2 cores; model 0.8 MB, ~601 MB a worker; memory limit unknown)"


def test_the_line_says_address_protocols_model_runtime_and_workers() -> None:
    facts = startup.Facts("0.0.0.0:8080", "", "samples/mnist", "TensorFlow 2.21.0", WORKERS)
    assert startup.line(facts) == (
        "serving http://0.0.0.0:8080 (EAS, TF Serving REST, V2, SageMaker); model samples/mnist "
        f"on TensorFlow 2.21.0; {WORKERS}")


def test_grpc_beside_http_and_grpc_alone() -> None:
    beside = startup.line(startup.Facts("127.0.0.1:8080", "127.0.0.1:8500", "m", "LiteRT 1.2", "w"))
    assert beside.startswith("serving http://127.0.0.1:8080 (EAS, TF Serving REST, V2, SageMaker) "
                             "and grpc://127.0.0.1:8500 (TF Serving and V2 gRPC, health); model m on "
                             "LiteRT 1.2; w")
    alone = startup.line(startup.Facts("unix:/tmp/tfserverless-7.sock", "0.0.0.0:8080", "m", "r", "w"))
    assert alone.startswith("serving grpc://0.0.0.0:8080 (TF Serving and V2 gRPC, health) and "
                            "http+unix:///tmp/tfserverless-7.sock (EAS, ")


def test_the_fallback_line_names_functions_frameworks_server() -> None:
    said = startup.fallback_line(Config(model_path="s3://k:secret@b/m.tar.gz"), "0.0.0.0", 8080)
    assert said.startswith("serving http://0.0.0.0:8080 (EAS, TF Serving REST, V2, SageMaker); "
                           "model s3://")
    assert said.endswith(startup.FALLBACK_WORKERS) and "secret" not in said


def test_facts_redact_the_model_url_and_name_grpc() -> None:
    config = Config(model_path="s3://key:secret@bucket/m.tar.gz?X-Amz-Signature=abc", grpc_port=8500)
    config.grpc_host = "127.0.0.1"
    facts = startup.facts(config, "127.0.0.1:8080", WORKERS)
    assert facts.model == "s3://bucket/m.tar.gz" and facts.grpc == "127.0.0.1:8500"
    assert "secret" not in startup.line(facts) and "Signature" not in startup.line(facts)
    assert facts.runtime.startswith("TensorFlow")  # a remote model is not read by the master


def test_the_runtime_is_litert_for_a_converted_model_or_the_processor(tmp_path: Any) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "litert.json").write_text("{}")
    assert startup.runtime(Config(model_path=str(tmp_path))).startswith("LiteRT")
    assert startup.runtime(Config(model_path="s3://b/m", processor="litert_cpu")).startswith("LiteRT")
    version = startup.installed(startup.TENSORFLOW_DISTS)
    assert startup.runtime(Config(model_path=str(tmp_path / "none"))) == (
        f"TensorFlow {version}" if version else "TensorFlow")


@pytest.mark.parametrize("info,first,expected", [
    ({"requests": 0, "source": "", "replayed": 0, "failed": 0, "seconds": 0.0}, None,
     "warm-up: no warm-up data"),
    ({"requests": 2, "source": "w.bin", "replayed": 9, "failed": 1, "seconds": 0.1234}, 0.0042,
     "warm-up: 2 request(s) x 5 from w.bin: 9 replayed in 123 ms; first replay 4.2 ms, failed 1"),
    ({"requests": 1, "source": "w.bin", "replayed": 0, "failed": 1, "seconds": 0.01}, None,
     "warm-up: 1 request(s) x 5 from w.bin: 0 replayed in 10 ms; no replay succeeded, failed 1"),
])
def test_the_warm_up_result_is_one_line(info: Dict[str, Any], first: Optional[float],
                                        expected: str) -> None:
    assert result_line(info, 5, first) == expected


@pytest.fixture
def loggers() -> Any:
    levels = {n: logging.getLogger(n).level for n in logs.THIRD_PARTY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_third_party_logs_are_quiet_unless_debug(loggers: Any) -> None:
    environ: Dict[str, str] = {}
    assert logs.quiet_third_party("DEBUG", environ) is False and environ == {}
    assert logs.quiet_third_party("INFO", environ) is True
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert logging.getLogger("tensorflow").level == logging.ERROR
    assert logging.getLogger("absl").level == logging.ERROR
    mine = {"TF_CPP_MIN_LOG_LEVEL": "0"}  # the user's own setting stays
    logs.quiet_third_party("WARNING", mine)
    assert mine == {"TF_CPP_MIN_LOG_LEVEL": "0"}


#: what TensorFlow 2.21 printed per worker at start, whatever TF_CPP_MIN_LOG_LEVEL said
TF_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796456495.365186    8287 port.cc:153] oneDNN custom operations are on. You "
    b"may see slightly different numerical results",
    b"I0000 00:00:1796456500.094960    8287 mlir_graph_optimization_pass.cc:437] MLIR V1 "
    b"optimization pass is not enabled",
]
KEPT = [
    b"2026-12-05 07:41:35,021 INFO tfserverless: serving http://0.0.0.0:8080 (EAS, ...)",
    b"WARNING:tensorflow:something TensorFlow warns of",
    b"E0000 00:00:1796456500.094960    8287 some.cc:1] an error of TensorFlow's",
    b"Illegal instruction (core dumped)",
    b"In the middle of a line without its newline",
]


def test_the_stderr_filter_drops_tensorflows_notices_and_keeps_the_rest() -> None:
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    os.write(write_in, b"\n".join([KEPT[0], *TF_LINES, *KEPT[1:]]))
    os.close(write_in)
    logs.forward(read_in, write_out)
    os.close(write_out)
    with os.fdopen(read_out, "rb") as f:
        out = f.read()
    os.close(read_in)
    assert out == b"\n".join(KEPT)
    assert not any(logs.NOISE.match(line) for line in KEPT)
    assert all(logs.NOISE.match(line) for line in TF_LINES)
    assert re.search(rb"oneDNN|absl::InitializeLog", out) is None
