"""An EAS service config JSON, as it is, turned into our settings and each platform's
deploy parameters.  Pure functions; the CLI (``python -m tfserverless``) prints them."""

from __future__ import annotations

import difflib
import json
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple

from ..config import MAX_BATCH_ROWS, MAX_WORKER_THREADS, MAX_WORKERS, in_service
from ..errors import ConfigError

KNOWN_TOP = {"name", "model_path", "processor", "warm_up_data_path", "metadata", "token",
             "autoscaler",
             "model_entry", "model_config", "storage", "cloud", "containers", "networking",
             "labels", "options"}
KNOWN_METADATA = {"instance", "cpu", "memory", "gpu", "gpu_memory", "rpc", "resource",
                  "workspace_id", "enable_webservice", "qos", "cuda"}
#: HTTP/2 streams our gRPC server lets one connection have open at once
#: (``platforms.grpc.MAX_STREAMS``; a test holds them equal)
GRPC_MAX_STREAMS = 256
KNOWN_RPC = {"keepalive", "worker_threads", "max_queue_size", "batching", "max_batch_size",
             "max_batch_timeout", "rate_limit", "io_threads", "enable_jemalloc"}


def load_processors(path: Optional[str] = None) -> Dict[str, Any]:
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "processors.json")
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


class Deployment(NamedTuple):
    name: str
    model_path: str
    processor: str
    warm_up_data_path: str
    token: str
    instance: int
    cpu: float
    memory_mb: int
    gpu: int
    keepalive_ms: int
    worker_threads: int
    max_queue_size: int
    rate_limit: float
    warnings: Tuple[str, ...]
    batching: bool = False
    max_batch_size: int = 16
    max_batch_timeout_ms: int = 50
    min_instances: int = 0  # EAS autoscaler.min (else none kept warm)
    max_instances: int = 0  # EAS autoscaler.max (else metadata.instance)
    sized_workers: int = 0  # WORKERS chosen for the model's size (render); 0: from the vCPUs
    protocol: str = "http"  # what the one port speaks: http, or grpc (render --protocol)

    @property
    def workers(self) -> int:
        """Worker processes per instance: one per whole vCPU (each loads its own model), or
        what ``render`` chose for the model's size and the memory."""
        return self.sized_workers or max(1, int(self.cpu))

    @property
    def concurrency(self) -> int:
        """Requests one instance takes at once: EAS's running plus queued, per worker.  Over
        gRPC the platform's proxy multiplexes its calls as streams on one HTTP/2 connection,
        and a connection reaches one worker (the kernel spreads connections, not streams):
        one worker's share, at most the streams a connection may have open."""
        running = in_service(self.batching, self.worker_threads, self.max_batch_size)
        if self.protocol == "grpc":
            return min(GRPC_MAX_STREAMS, running + self.max_queue_size)
        return self.workers * (running + self.max_queue_size)


_KIND_WORDS = {int: "a whole number", float: "a number"}


def _did_you_mean(key: str, known: Set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _num(field: str, value: Any, *, kind: type = int, minimum: float = 0,
         maximum: float = float("inf")) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{field}={value!r} is not a number; expected {_KIND_WORDS[kind]}")
    try:
        n = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}={value!r} is not a number; expected {_KIND_WORDS[kind]}") from None
    if n < minimum:
        raise ConfigError(f"{field}={value!r} is below {minimum}")
    if n > maximum:
        raise ConfigError(f"{field}={value!r} is over {maximum}; expected {minimum} to {maximum}")
    return n


def _section(name: str, value: Any, known: Any, warnings: List[str]) -> Dict[str, Any]:
    """An object of the config (``metadata``, ``metadata.rpc``); a field not used here is a
    warning (with the nearest known name), not an error."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name}={value!r} is not an object")
    warnings += [f"field '{name}.{k}' is not used here{_did_you_mean(k, known)}; ignored"
                 for k in value if k not in known]
    return value


def parse_service(data: Any, processors: Mapping[str, Any]) -> Deployment:
    """Validate an EAS service config; every error is one line naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("service config must be a JSON object")
    warnings: List[str] = [f"field {k!r} is not used here{_did_you_mean(k, KNOWN_TOP)}; ignored"
                           for k in data
                           if k not in KNOWN_TOP]
    name = data.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"name={name!r} is not a service name; expected letters, digits, _ or -")
    model_path = data.get("model_path")
    if not isinstance(model_path, str) or not model_path:
        typo = difflib.get_close_matches("model_path", [k for k in data if k not in KNOWN_TOP],
                                         n=1, cutoff=0.75)
        hint = f" ({typo[0]!r} is not a field: a typo of 'model_path'?)" if typo else ""
        raise ConfigError(f"model_path={model_path!r}; expected oss://, s3://, gs://, http(s):// "
                          f"or a local path of a SavedModel{hint}")
    processor = data.get("processor", f"tensorflow_cpu_{processors['current']}")
    table = processors["processors"]
    supported = sorted(k for k, v in table.items() if v.get("supported", True))
    if processor not in table:
        raise ConfigError(f"processor={processor!r} is not a known processor; expected one of "
                          f"{', '.join(supported)}")
    if not table[processor].get("supported", True):
        raise ConfigError(f"processor={processor!r} is not supported ({table[processor]['note']}); "
                          f"expected one of {', '.join(supported)}")
    warm = data.get("warm_up_data_path", "")
    if not isinstance(warm, str):
        raise ConfigError(f"warm_up_data_path={warm!r} is not a path")
    token = data.get("token", "")
    if not isinstance(token, str):
        raise ConfigError("token is not a string")
    meta = _section("metadata", data.get("metadata", {}), KNOWN_METADATA, warnings)
    rpc = _section("metadata.rpc", meta.get("rpc", {}), KNOWN_RPC, warnings)
    gpu = _num("metadata.gpu", meta.get("gpu", 0))
    device = processors["processors"][processor]["device"]
    if gpu and device != "gpu":
        raise ConfigError(f"metadata.gpu={gpu} but processor {processor} is a CPU processor; "
                          "expected a tensorflow_gpu_* processor")
    scaler = _autoscaler(data.get("autoscaler"), warnings)  # may add a warning
    return Deployment(
        name=name, model_path=model_path, processor=processor, warm_up_data_path=warm,
        token=token,
        instance=_num("metadata.instance", meta.get("instance", 1), minimum=1),
        cpu=_num("metadata.cpu", meta.get("cpu", 1), kind=float, minimum=0.05,
                 maximum=MAX_WORKERS),
        memory_mb=_num("metadata.memory", meta.get("memory", 2048), minimum=128),
        gpu=gpu,
        keepalive_ms=_num("metadata.rpc.keepalive", rpc.get("keepalive", 60000), minimum=1),
        worker_threads=_num("metadata.rpc.worker_threads", rpc.get("worker_threads", 5), minimum=1,
                            maximum=MAX_WORKER_THREADS),
        max_queue_size=_num("metadata.rpc.max_queue_size", rpc.get("max_queue_size", 64)),
        rate_limit=_num("metadata.rpc.rate_limit", rpc.get("rate_limit", 0), kind=float),
        warnings=tuple(warnings),
        batching=_flag("metadata.rpc.batching", rpc.get("batching", False)),
        max_batch_size=_num("metadata.rpc.max_batch_size", rpc.get("max_batch_size", 16),
                            minimum=1, maximum=MAX_BATCH_ROWS),
        max_batch_timeout_ms=_num("metadata.rpc.max_batch_timeout",
                                  rpc.get("max_batch_timeout", 50)),
        min_instances=scaler.get("min_instances", 0),
        max_instances=scaler.get("max_instances", 0),
    )


def _autoscaler(scaler: Any, warnings: List[str]) -> Dict[str, int]:
    """EAS ``autoscaler`` {min, max, strategies}: instance bounds every platform here has;
    its QPS strategy none has (they scale on concurrent requests), which is said once."""
    if scaler is None:
        return {}
    if not isinstance(scaler, dict):
        raise ConfigError(f"autoscaler={scaler!r} is not an object; expected {{\"min\": n, \"max\": m}}")
    lo = _num("autoscaler.min", scaler.get("min", 0), maximum=10_000)
    hi = _num("autoscaler.max", scaler.get("max", max(lo, 1)), minimum=1, maximum=10_000)
    if lo > hi:
        raise ConfigError(f"autoscaler.min={lo} is over autoscaler.max={hi}")
    if scaler.get("strategies"):
        warnings.append("autoscaler.strategies has no counterpart here: Lambda, Function Compute "
                        "and Cloud Run scale on concurrent requests (RPC_* sizes them), not QPS")
    return {"min_instances": lo, "max_instances": hi}


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={value!r} is not a boolean; expected true or false")
    return value


def environment(svc: Deployment) -> Dict[str, str]:
    """The function's environment for this service (the token only if the config has one)."""
    env = {"MODEL_PATH": svc.model_path, "SERVICE_NAME": svc.name}
    if svc.warm_up_data_path:
        env["WARM_UP_DATA_PATH"] = svc.warm_up_data_path
    if svc.token:
        env["SERVICE_TOKEN"] = svc.token
    # EAS's metadata.rpc admission knobs, per worker process (admission.py)
    env["RPC_WORKER_THREADS"] = str(svc.worker_threads)
    env["RPC_MAX_QUEUE_SIZE"] = str(svc.max_queue_size)
    env["RPC_KEEPALIVE"] = str(svc.keepalive_ms)
    if svc.rate_limit:
        env["RPC_RATE_LIMIT"] = f"{svc.rate_limit:g}"
    if svc.batching:
        env["RPC_BATCHING"] = "true"
        env["RPC_MAX_BATCH_SIZE"] = str(svc.max_batch_size)
        env["RPC_MAX_BATCH_TIMEOUT"] = str(svc.max_batch_timeout_ms)
    # WORKERS only where render knows the model's size (then as serve would choose it);
    # otherwise serve chooses from the instance's CPU quota, memory and the model, since a
    # WORKERS it is given that cannot fit the memory is refused at start
    if svc.sized_workers:
        env["WORKERS"] = str(svc.sized_workers)
    if svc.protocol != "http":  # serve's PORT speaks it (HTTP only on a unix socket)
        env["PROTOCOL"] = svc.protocol
    return env
