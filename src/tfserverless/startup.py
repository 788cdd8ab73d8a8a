"""The one line ``tfserverless serve`` logs when it starts, before any worker forks: where it
listens, which model on which runtime, the protocols each address serves and the workers, e.g.

    serving http://0.0.0.0:8080 (EAS, TF Serving REST, V2, SageMaker); model samples/mnist
    on TensorFlow 2.21.0; workers: 2 (2 cores; model 0.8 MB, ...; memory limit unknown)

(one line in the log).  ``line`` formats it from plain facts (tests call it directly);
``facts`` gathers them from the config without importing the runtime (the master must not:
TensorFlow's threads do not survive gunicorn's fork), so the runtime is the installed
package's version, read from its metadata.
"""

from __future__ import annotations

import contextlib
import os
from typing import NamedTuple, Optional, Tuple

from .config import Config

#: what the HTTP address answers (every route, every HTTP address: ``serving.service``)
HTTP_PROTOCOLS = "EAS, TF Serving REST, V2, SageMaker"
#: what the gRPC address answers (``platforms.grpc``)
GRPC_PROTOCOLS = "TF Serving and V2 gRPC, health"
#: the packages each runtime is installed as, first found wins
TENSORFLOW_DISTS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel")
LITERT_DISTS = ("ai-edge-litert", "tflite-runtime")


class Facts(NamedTuple):
    http: str  # gunicorn's bind: host:port, or unix:/path (PROTOCOL=grpc)
    grpc: str  # host:port, '' when gRPC is off
    model: str  # MODEL_PATH, redacted
    runtime: str  # "TensorFlow 2.21.0", "LiteRT 1.2.0"
    workers: str  # sizing's line: "workers: 2 (2 cores; ...)"


def line(facts: Facts) -> str:
    """The startup line: addresses with what each serves, model and runtime, workers."""
    grpc = [f"grpc://{facts.grpc} ({GRPC_PROTOCOLS})"] if facts.grpc else []
    if facts.http.startswith("unix:"):  # PROTOCOL=grpc: the port is gRPC's, HTTP stays local
        where = [*grpc, f"http+unix://{facts.http[len('unix:'):]} ({HTTP_PROTOCOLS})"]
    else:
        where = [f"http://{facts.http} ({HTTP_PROTOCOLS})", *grpc]
    return (f"serving {' and '.join(where)}; model {facts.model} on {facts.runtime}; "
            f"{facts.workers}")


def installed(dists: Tuple[str, ...]) -> Optional[str]:
    """The version of the first of ``dists`` installed, from its package metadata (no import);
    None when none is, or Python 3.7 cannot read metadata."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        return None
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def runtime(config: Config) -> str:
    """The runtime the model will load on: LiteRT for the ``litert_cpu`` processor or a local
    ``tfserverless convert`` output, else TensorFlow (a remote model's files are not read
    here: the worker's cold-start line names the runtime it loaded)."""
    from .backends.registry import backend_for
    from .storage import find_saved_model_root

    name = "LiteRT" if config.processor == "litert_cpu" else "TensorFlow"
    path = config.model_path
    if name == "TensorFlow" and "://" not in path and os.path.isdir(path):
        # not a model: the worker's load says so, with its own message
        with contextlib.suppress(Exception):
            name = backend_for(find_saved_model_root(path, quiet=True))[0]
    version = installed(LITERT_DISTS if name == "LiteRT" else TENSORFLOW_DISTS)
    return f"{name} {version}" if version else name


def facts(config: Config, http_bind: str, workers: str) -> Facts:
    from .storage import redact

    grpc = f"{config.grpc_host}:{config.grpc_port}" if config.grpc_port else ""
    return Facts(http_bind, grpc, redact(config.model_path), runtime(config), workers)


#: the workers part of the line where ``serve`` hands over to functions-framework's server
FALLBACK_WORKERS = "workers: functions-framework's server (this Python has no uvicorn worker)"


def fallback_line(config: Config, host: str, port: int) -> str:
    """The startup line where ``serve`` execs functions-framework's server (Python 3.7's
    processors), said before the exec: that server's own start says nothing of ours."""
    return line(facts(config, f"{host}:{port}", FALLBACK_WORKERS))


__all__ = ["FALLBACK_WORKERS", "GRPC_PROTOCOLS", "HTTP_PROTOCOLS", "Facts", "facts",
           "fallback_line", "installed", "line", "runtime"]
