"""An EAS service config JSON, as it is, turned into our settings and each platform's
deploy parameters.  Pure functions; the CLI (``python -m tfserverless``) prints them."""

from __future__ import annotations

import difflib
import json
import os
import shlex
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple

from .admission import in_service
from .config import MAX_BATCH_ROWS, MAX_WORKER_THREADS, MAX_WORKERS
from .errors import ConfigError

PLATFORMS = ("aws", "fc", "cloudrun")
FC_MAX_CONCURRENCY = 200  # FC 3.0's cap on instance concurrency
CLOUD_RUN_MAX_CONCURRENCY = 1000
FLAVOURS = {"aws": "lambda", "fc": "fc", "cloudrun": "cloudrun"}
KNOWN_TOP = {"name", "model_path", "processor", "warm_up_data_path", "metadata", "token",
             "model_entry", "model_config", "storage", "cloud", "containers", "networking",
             "labels", "options"}
KNOWN_METADATA = {"instance", "cpu", "memory", "gpu", "gpu_memory", "rpc", "resource",
                  "workspace_id", "enable_webservice", "qos", "cuda"}
KNOWN_RPC = {"keepalive", "worker_threads", "max_queue_size", "batching", "max_batch_size",
             "max_batch_timeout", "rate_limit", "io_threads", "enable_jemalloc"}


def load_processors(path: Optional[str] = None) -> Dict[str, Any]:
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "processors.json")
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


class Service(NamedTuple):
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

    @property
    def workers(self) -> int:
        """Worker processes per instance: one per whole vCPU (each loads its own model)."""
        return max(1, int(self.cpu))

    @property
    def concurrency(self) -> int:
        """Requests one instance takes at once: EAS's running plus queued, per worker."""
        running = in_service(self.batching, self.worker_threads, self.max_batch_size)
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


def parse_service(data: Any, processors: Mapping[str, Any]) -> Service:
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
    if processor not in processors["processors"]:
        raise ConfigError(f"processor={processor!r} is not a known processor; expected one of "
                          f"{', '.join(sorted(processors['processors']))}")
    warm = data.get("warm_up_data_path", "")
    if not isinstance(warm, str):
        raise ConfigError(f"warm_up_data_path={warm!r} is not a path")
    token = data.get("token", "")
    if not isinstance(token, str):
        raise ConfigError("token is not a string")
    meta = data.get("metadata", {})
    if not isinstance(meta, dict):
        raise ConfigError(f"metadata={meta!r} is not an object")
    warnings += [f"field 'metadata.{k}' is not used here{_did_you_mean(k, KNOWN_METADATA)}; "
                 "ignored" for k in meta
                 if k not in KNOWN_METADATA]
    rpc = meta.get("rpc", {})
    if not isinstance(rpc, dict):
        raise ConfigError(f"metadata.rpc={rpc!r} is not an object")
    warnings += [f"field 'metadata.rpc.{k}' is not used here{_did_you_mean(k, KNOWN_RPC)}; "
                 "ignored" for k in rpc
                 if k not in KNOWN_RPC]
    gpu = _num("metadata.gpu", meta.get("gpu", 0))
    device = processors["processors"][processor]["device"]
    if gpu and device != "gpu":
        raise ConfigError(f"metadata.gpu={gpu} but processor {processor} is a CPU processor; "
                          "expected a tensorflow_gpu_* processor")
    return Service(
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
    )


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={value!r} is not a boolean; expected true or false")
    return value


def environment(svc: Service) -> Dict[str, str]:
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
    env["WORKERS"] = str(svc.workers)  # from metadata.cpu
    return env


def image_tag(processor: str, platform: str) -> str:
    return f"tfserverless:{processor}-{FLAVOURS[platform]}"


def render(svc: Service, platform: str) -> Dict[str, Any]:
    """Deploy parameters for one platform, as data (the CLI prints them)."""
    if platform not in PLATFORMS:
        raise ConfigError(f"--platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    timeout_s = max(1, (svc.keepalive_ms + 999) // 1000)
    tag = image_tag(svc.processor, platform)
    if platform == "aws":
        if svc.gpu:
            raise ConfigError(f"metadata.gpu={svc.gpu}: AWS Lambda has no GPUs; expected "
                              "--platform fc or cloudrun for a GPU processor")
        memory = min(10240, max(128, svc.memory_mb))
        params = {
            "ImageUri": f"<account>.dkr.ecr.<region>.amazonaws.com/{tag}",
            "ModelPath": svc.model_path, "WarmUpDataPath": svc.warm_up_data_path,
            "ServiceName": svc.name, "MemorySize": str(memory),
            "Timeout": str(min(900, timeout_s)),
            "ProvisionedConcurrency": str(svc.instance),
        }
        # Lambda runs one request per instance: no queue to size; keepalive is the Timeout
        overrides = " ".join(f"{k}={shlex.quote(v)}" for k, v in params.items())
        if svc.token:
            overrides += " ServiceToken=<token from the config>"
        return {"platform": "aws", "image": tag, "parameters": params,
                "command": f"sam deploy --template-file template.yaml --stack-name {svc.name} "
                           f"--capabilities CAPABILITY_IAM --parameter-overrides {overrides}"}
    if platform == "fc":
        if svc.gpu:
            raise ConfigError(f"metadata.gpu={svc.gpu}: s.yaml deploys the CPU runtime; use the "
                              f"GPU container image {tag} with runtime custom-container")
        vars_ = {"FUNCTION_NAME": svc.name, "SERVICE_NAME": svc.name,
                 "MODEL_PATH": svc.model_path, "WARM_UP_DATA_PATH": svc.warm_up_data_path,
                 # FC wants memory in multiples of 64 MB and about 1 vCPU per 1-4 GB
                 "MEMORY": str(min(32768, max(128, (svc.memory_mb + 63) // 64 * 64))),
                 "CPU": f"{max(0.05, svc.cpu):g}", "TIMEOUT": str(min(86400, timeout_s)),
                 # FC sends an instance at most this many requests at once: EAS's queue
                 "INSTANCE_CONCURRENCY": str(min(FC_MAX_CONCURRENCY, svc.concurrency))}
        vars_.update({k: v for k, v in environment(svc).items()
                      if k.startswith("RPC_") or k == "WORKERS"})
        env_line = " ".join(f"{k}={shlex.quote(v)}" for k, v in vars_.items())
        if svc.token:
            env_line += " SERVICE_TOKEN=<token from the config>"
        return {"platform": "fc", "image": tag, "parameters": vars_,
                "command": f"{env_line} s deploy -t s.yaml"}
    flags = [f"--image={tag}", f"--memory={max(512, svc.memory_mb)}Mi",
             f"--concurrency={min(CLOUD_RUN_MAX_CONCURRENCY, svc.concurrency)}",
             f"--cpu={max(1, int(svc.cpu + 0.999))}", f"--timeout={min(3600, timeout_s)}",
             f"--max-instances={max(1, svc.instance)}", "--port=8080"]
    if svc.gpu:
        flags += [f"--gpu={svc.gpu}", "--gpu-type=nvidia-l4", "--no-cpu-throttling"]
    env = {k: v for k, v in environment(svc).items() if k != "SERVICE_TOKEN"}
    flags.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env.items()))
    if svc.token:
        flags.append("--set-secrets=SERVICE_TOKEN=<secret name>:latest")
    return {"platform": "cloudrun", "image": tag, "parameters": env,
            "command": f"gcloud run deploy {svc.name} " + " ".join(shlex.quote(f) for f in flags)}
