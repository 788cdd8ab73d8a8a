"""What ``tfserverless serve`` logs when it starts: one line saying where it listens, which
model on which runtime, the protocols and the workers; TensorFlow's, absl's and gunicorn's
chatter only at ``LOG_LEVEL=DEBUG``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Any, Dict, List

import pytest

from tfserverless import logs, startup

from ..conftest import PYTHON, Server, free_port

#: what TensorFlow and the HTTP server printed at start before they were quieted
NOISE = ("oneDNN", "cpu_feature", "deprecated", "absl::InitializeLog", "Booting worker",
         "Listening at", "Application startup")


def started(start_server: Any, env: Dict[str, str]) -> List[str]:
    s: Server = start_server(dict(env, TF_CPP_MIN_LOG_LEVEL=""))  # as a user leaves it: unset
    s.wait_ready()
    s.stop()  # what every worker said by then, and gunicorn's lines on the way out
    with open(s.log_path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def test_one_startup_line_and_no_third_party_noise(start_server: Any, models: Dict[str, str]) -> None:
    lines = started(start_server, {"MODEL_PATH": models["tf1_mnist"], "WORKERS": "2"})
    said = [ln for ln in lines if "tfserverless: serving " in ln]
    assert len(said) == 1, lines
    line = said[0]
    assert re.search(r"serving http://127\.0\.0\.1:\d+ \(EAS, TF Serving REST, V2, SageMaker\); "
                     r"model \S+tf1_mnist on TensorFlow[ \d.]*; workers: 2 \(WORKERS=2", line), line
    assert [ln for ln in lines if any(n in ln for n in NOISE)] == []
    assert sum("warm-up: no warm-up data" in ln for ln in lines) >= 1


def test_debug_brings_the_chatter_back(start_server: Any, models: Dict[str, str]) -> None:
    lines = started(start_server, {"MODEL_PATH": models["tf1_mnist"], "LOG_LEVEL": "DEBUG"})
    text = "\n".join(lines)
    assert text.count("tfserverless: serving http://") == 1
    assert "Booting worker" in text and "loaded " in text  # gunicorn's, and our DEBUG line
    version = startup.installed(startup.TENSORFLOW_DISTS) or "0"
    if tuple(int(p) for p in version.split(".")[:2]) >= (2, 17):  # what the filter is for
        assert any(logs.NOISE.match(ln.encode()) for ln in lines), text[-3000:]


#: ``serve`` on a Python without the uvicorn worker (the 3.7 processors): it execs
#: functions-framework's server, which logs nothing of ours
FALLBACK = ("import sys; from tfserverless import server, __main__; server.worker_class = lambda: None; "
            "sys.exit(__main__.main(sys.argv[1:]))")


def test_the_functions_framework_fallback_says_the_line_too(models: Dict[str, str]) -> None:
    port = free_port()
    env = dict(os.environ, MODEL_PATH=models["tf1_mnist"], WORKERS="1", TF_CPP_MIN_LOG_LEVEL="")
    proc = subprocess.Popen([PYTHON, "-c", FALLBACK, "serve", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    lines: List[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # until functions-framework's server has started
            raw = proc.stdout.readline()
            if not raw:
                break
            lines.append(raw.decode("utf-8", "replace").rstrip())
            if "tfserverless: serving " in lines[-1]:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    said = [ln for ln in lines if "tfserverless: serving " in ln]
    assert len(said) == 1, lines
    assert re.search(r"serving http://127\.0\.0\.1:\d+ \(EAS, TF Serving REST, V2, SageMaker\); "
                     r"model \S+tf1_mnist on TensorFlow[ \d.]*; workers: functions-framework's",
                     said[0]), said


@pytest.mark.slow  # a process
def test_the_fallback_refuses_a_missing_model_in_one_line_before_any_startup_line(tmp_path: Any) -> None:
    env = dict(os.environ, MODEL_PATH=str(tmp_path / "nothing-here"))
    proc = subprocess.run([PYTHON, "-c", FALLBACK, "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "nothing-here' does not exist" in proc.stderr
