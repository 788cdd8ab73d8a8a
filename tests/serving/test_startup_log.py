"""What ``tfserverless serve`` logs when it starts: one line saying where it listens, which
model on which runtime, the protocols and the workers; TensorFlow's, absl's and gunicorn's
chatter only at ``LOG_LEVEL=DEBUG``."""

from __future__ import annotations

import re
from typing import Any, Dict, List

from tfserverless import logs, startup

from ..conftest import Server

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
