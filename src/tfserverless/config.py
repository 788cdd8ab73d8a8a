"""Every environment read lives here: ``Config.from_environ(environ)``.

Like Starlette's config, the mapping is injected (tests pass a dict; the handlers pass
``os.environ``) and a malformed value fails at start with one line naming the key and value
(the parsers are ``config_values``).  Secret values (``SERVICE_TOKEN``, access keys) are never
echoed.  ``SETTINGS`` is the one table of the variables, the attribute each sets, its parser
and its default: ``Config()`` and ``from_environ`` both take their defaults from it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

from . import cgroup
from . import config_values as v
from .config_values import MAX_BATCH_ROWS, MAX_WORKER_THREADS, MAX_WORKERS, parse_size
from .errors import ConfigError

PLATFORM_INIT_BUDGET = {"aws": 9.0, "fc": 280.0}
#: seconds a request line and its headers may take to arrive (``http_guard``)
HEADER_READ_TIMEOUT = 10.0
#: bytes of request header names and values the app takes (``platforms.asgi``); more is a 431
MAX_HEADER_BYTES = 64 << 10
#: bytes a request line and its header block may take on the wire before they are complete
#: (``http_guard``; more is a 431, read no further): the app's 64 KiB of headers and as
#: much again for the URL and each field's ": " and CRLF
MAX_HEAD_BYTES = 2 * MAX_HEADER_BYTES


#: what ``TFSERVERLESS_PLATFORM`` may say (else the platform is told by its own variables)
PLATFORMS = ("aws", "fc", "cloudrun", "sagemaker", "local")
#: where SageMaker unpacks a model's ``ModelDataUrl`` archive: MODEL_PATH's default there
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
SAGEMAKER_PORT = 8080


def detect_platform(environ: Mapping[str, str]) -> str:
    """Where this instance runs, from the variables each platform sets.  SageMaker documents
    none for a single-container endpoint: it runs the image as ``docker run IMAGE serve``, so
    our images' entrypoint says so in ``TFSERVERLESS_PLATFORM=sagemaker`` when started with
    that bare ``serve``; ``SAGEMAKER_BIND_TO_PORT`` (which SageMaker sets for inference
    pipelines and multi-container endpoints) says so too."""
    named = environ.get("TFSERVERLESS_PLATFORM", "").strip().lower()
    if named:
        if named not in PLATFORMS:
            raise ConfigError(f"TFSERVERLESS_PLATFORM={named[:40]!r} is not a platform; expected "
                              f"one of {', '.join(PLATFORMS)} (or unset: told from the environment)")
        return named
    if environ.get("SAGEMAKER_BIND_TO_PORT"):
        return "sagemaker"
    if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return "aws"
    if environ.get("FC_FUNCTION_NAME") or environ.get("FC_FUNC_CODE_PATH"):
        return "fc"
    if environ.get("K_SERVICE"):
        return "cloudrun"
    return "local"


def serve_port(environ: Mapping[str, str]) -> int:
    """The port ``tfserverless serve`` listens on: under SageMaker ``SAGEMAKER_BIND_TO_PORT``,
    else 8080, as its container contract says; elsewhere ``PORT`` (Cloud Run, Knative), else
    8080."""
    key = "SAGEMAKER_BIND_TO_PORT" if detect_platform(environ) == "sagemaker" else "PORT"
    raw = environ.get(key, "").strip()
    return v.port(key, raw) if raw else SAGEMAKER_PORT


def header_read_timeout(environ: Mapping[str, str]) -> float:
    """``HEADER_READ_TIMEOUT`` (0: no limit), also read on its own by the HTTP worker, which
    has no ``Config`` of its own."""
    raw = environ.get("HEADER_READ_TIMEOUT", "")
    return v.seconds("HEADER_READ_TIMEOUT", raw) if raw.strip() else HEADER_READ_TIMEOUT


def default_workers(cgroup_root: str = cgroup.ROOT) -> int:
    """Worker processes per instance when ``WORKERS`` is unset, before ``sizing`` weighs the
    model against the memory limit: one per core the process may use, each with its own copy
    of the model.  A container's CPU quota counts (a 1-vCPU container on a 32-core host sees
    32 cores but gets one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    quota = cgroup.cpu_quota(cgroup_root)
    return max(1, min(cores, quota) if quota else cores)


#: where a platform says how much memory the function has, in MB (MiB, 2^20 bytes): Lambda
#: (docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html) and Function Compute
#: (alibabacloud.com/help/en/functioncompute/fc/environment-variables: "the memory size
#: configured for the function (MB)")
MEMORY_SIZE_KEYS = ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "FC_FUNCTION_MEMORY_SIZE")


def platform_memory(environ: Mapping[str, str]) -> int:
    """The memory a platform gives the function, in bytes; 0 when no platform says."""
    said = [v.positive_int(k, environ[k]) << 20 for k in MEMORY_SIZE_KEYS
            if environ.get(k, "").strip()]
    return min([n for n in said if n] or [0])


def default_cache_dir(environ: Mapping[str, str]) -> str:
    """The platform's writable tmp: Lambda and FC allow writes only under /tmp."""
    return os.path.join(environ.get("TMPDIR") or tempfile.gettempdir(), "tfserverless-cache")


def in_service(batching: bool, worker_threads: int, max_batch_size: int) -> int:
    """Requests admitted at once: with batching, each of the ``worker_threads`` model calls
    may carry ``max_batch_size`` requests (see ``batching``)."""
    return worker_threads * max(1, max_batch_size) if batching else worker_threads


class Setting(NamedTuple):
    key: str  # the environment variable
    attr: str  # the Config attribute it sets
    parse: Callable[[str, str], Any]
    default: Any  # None: derived from other settings (see ``Config.__init__``)


SETTINGS = (
    Setting("MODEL_PATH", "model_path", v.text, ""),
    Setting("SERVICE_NAME", "service_name", v.service_name, ""),
    Setting("SERVICE_TOKEN", "service_token", v.text, ""),
    Setting("MAX_BODY_BYTES", "max_body_bytes", v.body_limit, 64 << 20),
    # JSON turns into Python objects first: 3-6x its size for numbers, up to ~30x for strings
    # (measured), so its own cap
    Setting("MAX_JSON_BYTES", "max_json_bytes", v.body_limit, 8 << 20),
    Setting("MODEL_CACHE_DIR", "model_cache_dir", v.text, ""),
    Setting("LOG_LEVEL", "log_level", v.log_level, "INFO"),
    Setting("WARM_UP_DATA_PATH", "warm_up_data_path", v.text, ""),
    Setting("WARM_UP_COUNT", "warm_up_count", v.positive_int, 5),
    Setting("MODEL_LOAD_TIMEOUT", "load_timeout", v.seconds, 600.0),
    Setting("S3_ENDPOINT_URL", "s3_endpoint_url", v.text, ""),
    Setting("OSS_ENDPOINT", "oss_endpoint", v.text, ""),
    Setting("MAX_EXTRACT_BYTES", "max_extract_bytes", v.parse_size, 16 << 30),
    Setting("MAX_ARCHIVE_MEMBERS", "max_archive_members", v.positive_int, 100_000),
    # parallel ranged reads of a model (storage.ranges): object stores cap one stream
    Setting("FETCH_CONNECTIONS", "fetch_connections", v.connections, 16),
    Setting("FETCH_PART_BYTES", "fetch_part_bytes", v.part_size, 8 << 20),
    Setting("TF_INTRA_OP_THREADS", "intra_op_threads", v.positive_int, 0),
    Setting("TF_INTER_OP_THREADS", "inter_op_threads", v.thread_count, -1),
    Setting("TFSERVERLESS_PROCESSOR", "processor", v.text, ""),  # set in packaging/build's images
    # seconds an init hook may spend loading before it returns and lets the first request
    # finish the load (Lambda's init phase is capped at 10 s); default by platform
    Setting("INIT_LOAD_BUDGET", "init_budget", v.seconds, None),
    # EAS admission control (metadata.rpc.*), per worker process
    Setting("RPC_WORKER_THREADS", "rpc_worker_threads", v.threads, 5),
    Setting("RPC_MAX_QUEUE_SIZE", "rpc_max_queue_size", v.positive_int, 64),
    Setting("RPC_KEEPALIVE", "rpc_keepalive_ms", v.positive_int, 60000),
    Setting("RPC_RATE_LIMIT", "rpc_rate_limit", v.seconds, 0.0),
    # request bodies in flight per worker: four of the largest allowed by default
    Setting("MAX_INFLIGHT_BYTES", "max_inflight_bytes", v.parse_size, None),
    # what one client address may hold of it: half where clients reach us directly; all of
    # it behind a platform's front end, where every client has the front end's address
    Setting("MAX_INFLIGHT_BYTES_PER_CLIENT", "max_inflight_bytes_per_client", v.parse_size, None),
    # and of the requests admitted or queued (0: no bound; a benchmark, a batch job or a front
    # end legitimately sends everything from one address)
    Setting("MAX_REQUESTS_PER_CLIENT", "max_requests_per_client", v.positive_int, 0),
    Setting("SIGNATURE_MAX_SKEW", "signature_max_skew", v.seconds, 0.0),  # 0: no freshness check
    Setting("BODY_READ_TIMEOUT", "body_read_timeout", v.seconds, 30.0),  # seconds a body may take
    Setting("HEADER_READ_TIMEOUT", "header_read_timeout", v.seconds, HEADER_READ_TIMEOUT),
    # adaptive batching (metadata.rpc.batching, max_batch_size, max_batch_timeout)
    Setting("RPC_BATCHING", "rpc_batching", v.flag, False),
    Setting("RPC_MAX_BATCH_SIZE", "rpc_max_batch_size", v.batch_rows, 16),
    Setting("RPC_MAX_BATCH_TIMEOUT", "rpc_max_batch_timeout_ms", v.positive_int, 50),
    Setting("SERVER_TIMING", "server_timing", v.flag, True),  # Server-Timing on predictions
    # worker processes per instance (functions-framework's WORKERS); default: one a core,
    # which ``sizing`` may lower to what the memory limit fits
    Setting("WORKERS", "workers", v.workers, None),
    # gRPC (TF Serving's PredictionService, V2's GRPCInferenceService, grpc.health.v1) on its
    # own port beside HTTP in every worker (0: none); or PROTOCOL=grpc: PORT itself is gRPC
    Setting("GRPC_PORT", "grpc_port", v.port, 0),
    Setting("PROTOCOL", "protocol", v.serve_protocol, "http"),
)


class Config:
    """Settings of one function instance.  Build it with ``from_environ``; ``Config(**values)``
    takes any ``SETTINGS`` attribute (the rest keep their defaults) and ``platform``,
    ``cuda_visible_devices``, ``workers_set``, ``platform_memory`` and ``environ``."""

    model_path: str
    service_name: str
    service_token: str
    max_body_bytes: int
    max_json_bytes: int
    model_cache_dir: str
    log_level: str
    warm_up_data_path: str
    warm_up_count: int
    load_timeout: float
    s3_endpoint_url: str
    oss_endpoint: str
    max_extract_bytes: int
    max_archive_members: int
    fetch_connections: int
    fetch_part_bytes: int
    intra_op_threads: int
    inter_op_threads: int
    processor: str
    init_budget: float
    rpc_worker_threads: int
    rpc_max_queue_size: int
    rpc_keepalive_ms: int
    rpc_rate_limit: float
    max_inflight_bytes: int
    max_inflight_bytes_per_client: int
    max_requests_per_client: int
    signature_max_skew: float
    body_read_timeout: float
    header_read_timeout: float
    rpc_batching: bool
    rpc_max_batch_size: int
    rpc_max_batch_timeout_ms: int
    server_timing: bool
    workers: int
    grpc_port: int
    protocol: str

    def __init__(self, *, platform: str = "local", cuda_visible_devices: Optional[str] = None,
                 workers_set: bool = False, platform_memory: int = 0,
                 environ: Optional[Mapping[str, str]] = None, **values: Any) -> None:
        unknown = set(values) - {s.attr for s in SETTINGS}
        if unknown:
            raise TypeError(f"Config() got unknown settings {sorted(unknown)}")
        for s in SETTINGS:
            setattr(self, s.attr, values.get(s.attr, s.default))
        self.platform = platform
        self.cuda_visible_devices = cuda_visible_devices
        self.workers_set = workers_set  # WORKERS was given; else ``sizing`` may lower it
        self.platform_memory = platform_memory  # bytes the platform says we have; 0: not said
        # Credentials and other platform settings stay in the mapping the config came from,
        # so storage backends read them through the config, never from os.environ directly.
        self.environ: Dict[str, str] = dict(environ or {})
        self.grpc_host = "0.0.0.0"  # where gRPC listens: ``serve --host`` sets it
        # the derived defaults
        self.model_cache_dir = self.model_cache_dir or default_cache_dir(self.environ)
        if platform == "sagemaker" and not self.model_path:
            self.model_path = SAGEMAKER_MODEL_DIR
        if self.init_budget is None:
            self.init_budget = PLATFORM_INIT_BUDGET.get(platform, 600.0)
        if self.max_inflight_bytes is None:
            self.max_inflight_bytes = 4 * self.max_body_bytes
        if self.max_inflight_bytes_per_client is None:
            self.max_inflight_bytes_per_client = self.max_inflight_bytes // 2 \
                if platform == "local" else self.max_inflight_bytes
        self.max_requests_per_client = self.max_requests_per_client or 0
        if self.workers is None:
            self.workers = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Config:
        values: Dict[str, Any] = {}
        for s in SETTINGS:
            raw = environ.get(s.key)
            if raw is not None and raw.strip() != "":
                values[s.attr] = s.parse(s.key, raw)
        workers_set = "workers" in values
        if not workers_set:
            values["workers"] = default_workers()
        kwargs: Dict[str, Any] = dict(
            values, platform=detect_platform(environ),
            cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"), workers_set=workers_set,
            platform_memory=platform_memory(environ), environ=environ)
        kwargs.update(overrides)
        return cls(**kwargs)

    def require_model_path(self) -> str:
        if not self.model_path:
            raise ConfigError(
                "MODEL_PATH is not set; expected a SavedModel directory, archive or "
                "oss:// s3:// http(s):// URL"
            )
        return self.model_path


__all__ = ["MAX_BATCH_ROWS", "MAX_WORKERS", "MAX_WORKER_THREADS", "PLATFORMS", "SAGEMAKER_MODEL_DIR",
           "SAGEMAKER_PORT", "SETTINGS", "Config", "Setting", "detect_platform",
           "header_read_timeout", "in_service", "parse_size", "serve_port"]
