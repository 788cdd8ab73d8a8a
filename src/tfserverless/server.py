"""``tfserverless serve``: the bare ASGI ``app`` (``platforms.asgi``) under gunicorn with
uvicorn workers, the same server functions-framework runs, without its framework in between
(measured on the sample MNIST, one worker: ~1.16x the requests a second at one client, ~1.3x
at 16).  ``WORKERS`` processes, each forked before anything imports TensorFlow; each loads
its own model copy after the fork, so when ``WORKERS`` is unset ``sizing`` weighs the model's
size against the memory limit first.

Where gunicorn or a uvicorn worker is missing (an old processor's Python), it hands over to
functions-framework's ``--target predict`` instead, which serves the same service.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
from typing import Any, Dict, Mapping, Optional

#: uvicorn's gunicorn worker with a deadline and a byte cap on request heads
#: (``HEADER_READ_TIMEOUT``, ``config.MAX_HEAD_BYTES``)
WORKER = "tfserverless.http_guard.HeadGuardWorker"
ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entrypoints.py")


def worker_class() -> Optional[str]:
    """``WORKER`` where uvicorn's gunicorn worker is installed (it subclasses it), else None."""
    from . import http_guard

    return WORKER if http_guard.BaseWorker is not None else None


def options(bind: str, workers: int, worker: str, log_level: str = "INFO") -> Dict[str, Any]:
    """gunicorn's settings; its and uvicorn's own lines (booting, listening) are errors only
    unless ``LOG_LEVEL=DEBUG`` (or ``GUNICORN_LOG_LEVEL``) asks for them: the startup line
    says where we listen."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": worker,
        "timeout": 0,  # a model load or a long prediction is not a hung worker
        "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "info" if log_level == "DEBUG" else "error"),
        # as functions-framework sets it (its PR #173: no 4094-byte cap on URLs); uvicorn's
        # worker passes no gunicorn limit_request_* on: a head's size is http_guard's cap
        "limit_request_line": 0,
    }


def http_bind(host: str, port: int, protocol: str) -> str:
    """Where gunicorn listens for HTTP: ``host:port``, or with ``PROTOCOL=grpc`` (``port`` is
    gRPC's) a unix socket of this process, so HTTP stays reachable from the instance only."""
    if protocol == "grpc":
        return "unix:" + os.path.join(tempfile.gettempdir(), f"tfserverless-{os.getpid()}.sock")
    return f"{host}:{port}"


def grpc_refusal(environ: Mapping[str, str], port: int, has_worker: bool) -> str:
    """Why gRPC, as the environment asks for it, cannot be served here ('' if it can or
    is not asked for).  Read before the service is built: the server's choice depends on it."""
    grpc_port = environ.get("GRPC_PORT", "").strip()
    alone = environ.get("PROTOCOL", "").strip().lower() == "grpc"
    if not alone and grpc_port in ("", "0"):
        return ""
    if grpc_port == str(port) and not alone:
        return (f"GRPC_PORT={grpc_port} is the HTTP port too; expected another port, or "
                "PROTOCOL=grpc to serve gRPC alone on it")
    if not has_worker:
        return ("gRPC (GRPC_PORT, PROTOCOL=grpc) runs in the uvicorn worker, which this Python "
                "lacks (gunicorn, uvicorn); expected them installed, or no gRPC")
    # whether grpcio is installed, without importing it before the fork (its threads and
    # polling do not survive one): platforms.grpc imports it in each worker
    if importlib.util.find_spec("grpc") is None:
        return ("gRPC (GRPC_PORT, PROTOCOL=grpc) needs grpcio, which this Python lacks; "
                "expected `pip install grpcio`")
    return ""


def _say_fallback_start(host: str, port: int) -> None:
    """The startup line before ``serve`` execs functions-framework's server, once the settings
    pass the checks the server's own start makes (a bad one stops here with its one line)."""
    from . import startup
    from .serving.app import create_service_or_exit

    config = create_service_or_exit(os.environ).config  # logging set up, TensorFlow quieted
    logging.getLogger("tfserverless").info("%s", startup.fallback_line(config, host, port))


def run(host: str, port: int) -> None:
    """Serve until stopped; the environment holds the service's settings."""
    worker = worker_class()
    try:
        import gunicorn.app.base
    except ImportError:
        worker = None
    refusal = grpc_refusal(os.environ, port, worker is not None)
    if refusal:
        print(f"tfserverless: configuration error: {refusal}", file=sys.stderr)
        raise SystemExit(2)
    if worker is None:  # no bare server here: functions-framework serves the same service
        _say_fallback_start(host, port)
        cmd = [sys.executable, "-m", "functions_framework", "--source", ENTRY, "--target",
               "predict", "--host", host, "--port", str(port)]
        os.execv(cmd[0], cmd)
    user_tf_cpp = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip()  # before the service sets it
    # entrypoints builds the service (a bad setting exits with one line)
    from . import entrypoints, logs, startup
    from .sizing import workers_or_exit

    config = entrypoints.service.config
    # as many model copies as fit the memory limit (the model's size: no TensorFlow)
    chosen = workers_or_exit(config, quiet=True)
    config.workers = chosen.workers
    config.grpc_host = host
    if config.protocol == "grpc":
        config.grpc_port = port
    bind = http_bind(host, port, config.protocol)
    opts = options(bind, config.workers, worker, config.log_level)
    logging.getLogger("tfserverless").info("%s", startup.line(startup.facts(config, bind, chosen.line)))
    if config.log_level != "DEBUG" and not user_tf_cpp:
        logs.filter_stderr()  # what TensorFlow prints past TF_CPP_MIN_LOG_LEVEL, in every worker

    class Application(gunicorn.app.base.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in opts.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return entrypoints.app

    Application().run()


__all__ = ["grpc_refusal", "http_bind", "options", "run", "worker_class"]
