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

import os
import sys
from typing import Any, Dict, Optional

#: uvicorn's gunicorn worker with a deadline and a byte cap on request heads
#: (``HEADER_READ_TIMEOUT``, ``config.MAX_HEAD_BYTES``)
WORKER = "tfserverless.http_guard.HeadGuardWorker"
ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entrypoints.py")


def worker_class() -> Optional[str]:
    """``WORKER`` where uvicorn's gunicorn worker is installed (it subclasses it), else None."""
    from . import http_guard

    return WORKER if http_guard.BaseWorker is not None else None


def options(host: str, port: int, workers: int, worker: str) -> Dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": worker,
        "timeout": 0,  # a model load or a long prediction is not a hung worker
        "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "error"),
        # as functions-framework sets it (its PR #173: no 4094-byte cap on URLs); uvicorn's
        # worker passes no gunicorn limit_request_* on: a head's size is http_guard's cap
        "limit_request_line": 0,
    }


def run(host: str, port: int) -> None:
    """Serve until stopped; the environment holds the service's settings."""
    worker = worker_class()
    try:
        import gunicorn.app.base
    except ImportError:
        worker = None
    if worker is None:  # no bare server here: functions-framework serves the same service
        cmd = [sys.executable, "-m", "functions_framework", "--source", ENTRY, "--target",
               "predict", "--host", host, "--port", str(port)]
        os.execv(cmd[0], cmd)
    from . import entrypoints  # builds the service (a bad setting exits with one line)
    from .sizing import workers_or_exit

    config = entrypoints.service.config
    # as many model copies as fit the memory limit (the model's size: no TensorFlow)
    config.workers = workers_or_exit(config)
    opts = options(host, port, config.workers, worker)

    class Application(gunicorn.app.base.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in opts.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return entrypoints.app

    Application().run()


__all__ = ["options", "run", "worker_class"]
