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
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import requests

from .processes import Logged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
DATA = os.path.join(TESTS, "data")
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Models(Dict[str, str]):
    """Built models by name; a model this TensorFlow cannot build skips the test using it."""

    def __missing__(self, key: str) -> str:
        pytest.skip(f"model {key!r} is built with TensorFlow 2 APIs; this venv has TensorFlow 1")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Build the test SavedModels once, with TensorFlow in a subprocess (``TFS_MODELS_LIST``:
    a list ``tests/models.py`` printed earlier, for runs that share one build)."""
    listed = os.environ.get("TFS_MODELS_LIST")
    if listed:
        with open(listed, encoding="utf-8") as f:
            return Models(line.split(" ", 1) for line in f.read().strip().splitlines())
    out = tmp_path_factory.mktemp("models")
    proc = subprocess.run(
        [PYTHON, os.path.join(TESTS, "models.py"), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Models(line.split(" ", 1) for line in proc.stdout.strip().splitlines())


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("sample") / "mnist"
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "samples", "build_mnist.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(out)


class Server(Logged):
    """A real server process on 127.0.0.1.  ``target`` ``app``: ``tfserverless serve`` (the
    bare ASGI app under gunicorn's uvicorn worker, what ``make serve`` runs); functions-framework
    with ``predict`` (ASGI where this functions-framework has it) or ``predict_flask``."""

    def __init__(self, env: Dict[str, str], *, wait_ready: bool = True,
                 log_path: Optional[str] = None, target: str = "app", grpc: bool = False,
                 port_env: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc = ""  # ``grpc``: gRPC beside HTTP (GRPC_PORT), at this host:port
        if grpc:
            grpc_port = free_port()
            env = dict(env, GRPC_PORT=str(grpc_port))
            self.grpc = f"127.0.0.1:{grpc_port}"
        full = dict(os.environ)
        full.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
        full.setdefault("WORKERS", "1")  # per-worker limits and counts; tests that want more say so
        full.update(env)
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        if port_env:  # serve finds its port in this variable, as a platform gives it
            full[port_env], listen = str(self.port), []
        self.log_path = log_path or os.path.join("/tmp", f"tfs-server-{self.port}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [PYTHON, "-m", "tfserverless", "serve"] if target == "app" else [
            os.path.join(BIN, "functions-framework"), "--source",
            os.path.join(ROOT, "handler", "main.py"), "--target", target]
        self.proc = subprocess.Popen(
            [*argv, *listen],
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

#: every HTTP entry: ``app`` (``tfserverless serve``: the bare ASGI app), and
#: functions-framework's ``predict`` (ASGI where it has it, Flask before 3.9) and ``predict_flask``
HTTP_TARGETS = ["app", "predict", "predict_flask"]


@pytest.fixture(scope="module", params=HTTP_TARGETS)
def target(request: Any) -> str:
    """Each HTTP entry in turn, for the tests of a module that asks for it."""
    return str(request.param)


def server_per_target(env: Callable[[Dict[str, str]], Dict[str, str]]) -> Any:
    """A module's ``server`` fixture: one real server per HTTP entry, with ``env(models)``."""

    @pytest.fixture(scope="module")
    def server(models: Dict[str, str], target: str) -> Iterator[Server]:
        s = Server(env(models), target=target)
        yield s
        s.stop()

    return server


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


# --- object stores on loopback -------------------------------------------------------------------

AWS_KEY_ID = "AKIDTESTING0000"
AWS_SECRET = "aws-secret-never-logged-5f3a"
OSS_KEY_ID = "LTAItesting0000"
OSS_SECRET = "oss-secret-never-logged-9c1e"


class LoopbackServer:
    """A store's real server as a subprocess on 127.0.0.1, ready once ``probe`` answers."""

    def __init__(self, name: str, argv: List[str], probe: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = f"/tmp/{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([a.format(port=self.port) for a in argv], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + probe, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError(f"{name} did not start: see {self.log_path}")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        self._log.close()


class MotoServer(LoopbackServer):
    """moto's S3 in server mode: a real HTTP object store on 127.0.0.1 (boto3 and oss2)."""

    def __init__(self) -> None:
        super().__init__("moto", [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p",
                                  "{port}"], "/moto-api/")

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET)

    def env(self) -> Dict[str, str]:
        """What a function instance needs to reach this server by s3:// and oss://."""
        return {"S3_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "OSS_ENDPOINT": self.url, "ALIBABA_CLOUD_ACCESS_KEY_ID": OSS_KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": OSS_SECRET}


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    if os.environ.get("TFS_COMPAT") and not os.path.exists(os.path.join(BIN, "moto_server")):
        pytest.skip("the compat venvs test the engine on old TensorFlow; storage runs in make test")
    server = MotoServer()
    yield server
    server.stop()


class FileServer:
    """``http.server`` in a thread: serves ``files`` (ranges too, with ``Accept-Ranges`` and
    ``If-Match``), counts GETs, can truncate or stall, ignore ranges, or break ranged GETs."""

    def __init__(self, port: int = 0) -> None:
        import hashlib
        import http.server
        import threading

        self.files: Dict[str, bytes] = {}
        self.gets: Dict[str, int] = {}
        self.ranged_gets: Dict[str, int] = {}
        self.truncate: Dict[str, int] = {}  # path -> bytes actually sent
        self.delay: Dict[str, float] = {}  # path -> seconds per 64 KiB
        self.ranges = True  # answer Range (206) and say so (Accept-Ranges)
        self.ignore_ranges = False  # say Accept-Ranges, then send the whole object (200)
        self.break_ranged: Dict[str, List[int]] = {}  # path -> the ranged GETs (1-based) cut
        self.after_ranged: Optional[Any] = None  # called after each ranged GET is answered
        self.lock = threading.Lock()
        tags: Dict[str, Any] = {}  # path -> (the bytes, their ETag): hashed once, not per GET
        owner = self

        def etag(path: str, data: bytes) -> str:
            seen = tags.get(path)
            if seen is None or seen[0] is not data:
                seen = tags[path] = (data, '"' + hashlib.md5(data).hexdigest() + '"')
            return str(seen[1])

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _head(self, status: int = 200, length: Optional[int] = None,
                      extra: Optional[Dict[str, str]] = None) -> Optional[bytes]:
                path = self.path.split("?")[0]
                data = owner.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.send_header("ETag", etag(path, data))
                self.send_header("Content-Type", "application/octet-stream")
                if owner.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                return data

            def do_HEAD(self) -> None:
                self._head()

            def _ranged(self, path: str, data: bytes, spec: str) -> Optional[bytes]:
                start_s, _, end_s = spec[len("bytes="):].partition("-")
                start, end = int(start_s), min(int(end_s) + 1, len(data))
                tag = etag(path, data)
                if self.headers.get("If-Match", tag) != tag:
                    self.send_response(412)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                with owner.lock:
                    n = owner.ranged_gets[path] = owner.ranged_gets.get(path, 0) + 1
                part = data[start:end]
                self.send_response(206)
                self.send_header("Content-Length", str(len(part)))
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.send_header("ETag", tag)
                self.end_headers()
                if n in owner.break_ranged.get(path, []):
                    part = part[: len(part) // 2]  # then the connection drops
                    self.close_connection = True
                return part

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                owner.gets[path] = owner.gets.get(path, 0) + 1
                spec = self.headers.get("Range", "")
                data = owner.files.get(path)
                if spec and data is not None and owner.ranges and not owner.ignore_ranges:
                    data = self._ranged(path, data, spec)
                    if owner.after_ranged is not None:
                        owner.after_ranged(path)
                else:
                    data = self._head()
                if data is None:
                    return
                if path in owner.truncate:
                    data = data[: owner.truncate[path]]
                    self.close_connection = True
                step = 1 << 16
                for i in range(0, len(data), step):
                    if path in owner.delay:
                        time.sleep(owner.delay[path])
                    try:
                        self.wfile.write(data[i:i + step])
                    except OSError:
                        return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.stop()


class GcsEmulator(LoopbackServer):
    """``gcp-storage-emulator``: Google Cloud Storage's JSON API on 127.0.0.1, in memory."""

    def __init__(self) -> None:
        super().__init__("gcs", [os.path.join(BIN, "gcp-storage-emulator"), "start", "--host",
                                 "127.0.0.1", "--port", "{port}", "--in-memory"], "/storage/v1/b")
        self.host = self.url

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.host})

    def env(self) -> Dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.host, "GOOGLE_CLOUD_PROJECT": "test"}


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsEmulator]:
    if os.environ.get("TFS_COMPAT") and not os.path.exists(os.path.join(BIN, "gcp-storage-emulator")):
        pytest.skip("the compat venvs test the engine on old TensorFlow; storage runs in make test")
    server = GcsEmulator()
    yield server
    server.stop()


# --- the fast lane: `pytest -m "not slow"` ----------------------------------------------------

#: fixtures that build models with TensorFlow, start servers or reach loopback servers
SLOW_FIXTURES = {"models", "sample_model", "start_server", "moto", "files", "predict_pb2",
                 "mnist_service", "multi_service", "gcs"}
#: modules whose every test runs a subprocess or a server
SLOW_MODULES = {"test_cli", "test_sagemaker_service",
                "test_imports", "test_layers", "test_packaging", "test_tensorflow",
                "test_service", "test_service_http", "test_protocols_http", "test_batching_http",
                "test_overload", "test_cross_version", "test_init", "test_cold_start",
                "test_images_e2e", "test_adapters", "test_warmup", "test_litert",
                "test_header_limits", "test_tfserving_rest", "test_tfserving_grpc", "test_readme",
                "test_lambda_rie"}


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if SLOW_FIXTURES & set(item.fixturenames) or module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_lane_stays_fast(request: Any, monkeypatch: Any) -> None:
    """In the fast lane a test that opens a socket or starts a process fails at once: the
    lane's promise (no server, no network, no subprocess) is checked, not hoped for."""
    if request.config.getoption("markexpr") != "not slow":
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fast lane opens no socket and starts no process: mark it slow")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if session.config.getoption("markexpr") == "not slow" and "tensorflow" in sys.modules:
        print("\nfast lane imported TensorFlow: mark the test that did so slow", file=sys.stderr)
        session.exitstatus = 1
