"""Shared fixtures: real SavedModels, real server processes, the real EAS SDK, a protobuf oracle."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
DATA = os.path.join(TESTS, "data")
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Build the test SavedModels once, with TensorFlow in a subprocess."""
    out = tmp_path_factory.mktemp("models")
    proc = subprocess.run(
        [PYTHON, os.path.join(TESTS, "models.py"), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    return built


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("sample") / "mnist"
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "samples", "build_mnist.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(out)


class Server:
    """A real functions-framework (gunicorn) process on 127.0.0.1."""

    def __init__(self, env: Dict[str, str], *, wait_ready: bool = True,
                 log_path: Optional[str] = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = dict(os.environ)
        full.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
        full.update(env)
        self.log_path = log_path or os.path.join("/tmp", f"tfs-server-{self.port}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "functions-framework"), "--source",
             os.path.join(ROOT, "handler", "main.py"), "--target", "predict",
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=full, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120.0, status: int = 200) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                r = requests.get(self.url + "/healthz", timeout=5)
                last = r.json()
                if r.status_code == status:
                    return dict(last)
            except requests.RequestException as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {last}; log: {self.log()[-3000:]}")

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def start_server() -> Iterator[Any]:
    servers: List[Server] = []

    def start(env: Dict[str, str], **kw: Any) -> Server:
        s = Server(env, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def eas_python() -> str:
    path = os.environ.get("EAS_PYTHON") or os.path.join(ROOT, ".venv-eas", "bin", "python")
    assert os.path.exists(path), f"EAS SDK venv missing at {path}: run `make eas-venv`"
    return path


def eas_call(spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Run the official EAS SDK in its own venv as a client process."""
    proc = subprocess.run([eas_python(), os.path.join(TESTS, "eas_client.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(proc.stdout))


@pytest.fixture(scope="session")
def predict_pb2(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """protobuf's own generated code for proto/predict.proto: the oracle for the codec."""
    out = tmp_path_factory.mktemp("pb2")
    proc = subprocess.run(
        [PYTHON, "-m", "grpc_tools.protoc", f"-I{os.path.join(ROOT, 'proto')}",
         f"--python_out={out}", "predict.proto"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("predict_pb2")
    finally:
        sys.path.remove(str(out))
