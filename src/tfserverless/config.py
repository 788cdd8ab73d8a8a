"""Every environment read lives here: ``Config.from_environ(environ)``.

Like Starlette's config, the mapping is injected (tests pass a dict; the handlers pass
``os.environ``) and a malformed value fails at start with one line naming the key and value.
Secret values (``SERVICE_TOKEN``, access keys) are never echoed.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional

from . import cgroup
from .admission import Limits, in_service
from .errors import ConfigError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


PLATFORM_INIT_BUDGET = {"aws": 9.0, "fc": 280.0}


def detect_platform(environ: Mapping[str, str]) -> str:
    """Where this instance runs, from the variables each platform sets."""
    if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return "aws"
    if environ.get("FC_FUNCTION_NAME") or environ.get("FC_FUNC_CODE_PATH"):
        return "fc"
    if environ.get("K_SERVICE"):
        return "cloudrun"
    return "local"


def parse_size(key: str, value: str) -> int:
    """``'64MiB'``, ``'65536'``, ``'1g'`` -> bytes; anything else is a one-line ConfigError."""
    m = _SIZE_RE.match(value)
    if not m:
        raise ConfigError(
            f"{key}={value!r} is not a size; expected bytes like 67108864 or 64MiB"
        )
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _SIZE_UNITS[unit]


def _positive_int(key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not an integer; expected a whole number") from None
    if n < 0:
        raise ConfigError(f"{key}={value!r} is negative; expected 0 or more")
    return n


def _connections(key: str, value: str) -> int:
    n = _positive_int(key, value)
    if not 1 <= n <= 64:
        raise ConfigError(f"{key}={value!r} is out of range; expected 1 (one stream) to 64 "
                          "connections")
    return n


def _part_size(key: str, value: str) -> int:
    n = parse_size(key, value)
    if not 64 << 10 <= n <= 1 << 30:
        raise ConfigError(f"{key}={value!r} is out of range; expected 64KiB to 1GiB")
    return n


def _at_least_one(key: str, value: str) -> int:
    n = _positive_int(key, value)
    if n < 1:
        raise ConfigError(f"{key}={value!r} is 0; expected 1 or more")
    return n


#: upper bounds of counts that cost threads, processes or memory (``render`` checks them too)
MAX_WORKER_THREADS, MAX_BATCH_ROWS, MAX_WORKERS = 1024, 4096, 256


def _at_most(hi: int, why: str) -> Callable[[str, str], int]:
    """1..``hi``: a count whose size costs threads, processes or memory up front."""
    def parse(key: str, value: str) -> int:
        n = _at_least_one(key, value)
        if n > hi:
            raise ConfigError(f"{key}={value!r} is over {hi}; expected 1 to {hi} ({why})")
        return n
    return parse


_threads = _at_most(MAX_WORKER_THREADS, "threads per worker")
_batch_rows = _at_most(MAX_BATCH_ROWS, "rows per model call")
_workers = _at_most(MAX_WORKERS, "processes, each with its own model copy")


def _thread_count(key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not an integer; expected -1, 0 or a thread count") from None
    if n < -1:
        raise ConfigError(f"{key}={value!r} is below -1; expected -1 (caller thread), 0 or more")
    return n


def _seconds(key: str, value: str) -> float:
    try:
        n = float(value.strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a number; expected seconds like 30") from None
    if not n >= 0:
        raise ConfigError(f"{key}={value!r} is negative; expected 0 or more seconds")
    return n


#: seconds a request line and its headers may take to arrive (``http_guard``)
HEADER_READ_TIMEOUT = 10.0
#: bytes of request header names and values the app takes (``platforms.asgi``); more is a 431
MAX_HEADER_BYTES = 64 << 10
#: bytes a request line and its header block may take on the wire before they are complete
#: (``http_guard``; more is a 431, read no further): the app's 64 KiB of headers and as
#: much again for the URL and each field's ": " and CRLF
MAX_HEAD_BYTES = 2 * MAX_HEADER_BYTES


def header_read_timeout(environ: Mapping[str, str]) -> float:
    """``HEADER_READ_TIMEOUT`` (0: no limit), also read on its own by the HTTP worker, which
    has no ``Config`` of its own."""
    raw = environ.get("HEADER_READ_TIMEOUT", "")
    return _seconds("HEADER_READ_TIMEOUT", raw) if raw.strip() else HEADER_READ_TIMEOUT


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={value!r} is not a switch; expected true or false")


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
    said = [_positive_int(k, environ[k]) << 20 for k in MEMORY_SIZE_KEYS
            if environ.get(k, "").strip()]
    return min([n for n in said if n] or [0])


def default_cache_dir(environ: Mapping[str, str]) -> str:
    """The platform's writable tmp: Lambda and FC allow writes only under /tmp."""
    return os.path.join(environ.get("TMPDIR") or tempfile.gettempdir(), "tfserverless-cache")


class Config:
    """Settings of one function instance.  Build it with ``from_environ``."""

    def __init__(
        self,
        *,
        model_path: str = "",
        service_name: str = "",
        service_token: str = "",
        max_body_bytes: int = 64 << 20,
        max_json_bytes: int = 8 << 20,
        model_cache_dir: str = "",
        log_level: str = "INFO",
        warm_up_data_path: str = "",
        warm_up_count: int = 5,
        load_timeout: float = 600.0,
        s3_endpoint_url: str = "",
        oss_endpoint: str = "",
        max_extract_bytes: int = 16 << 30,
        max_archive_members: int = 100_000,
        fetch_connections: int = 16,
        fetch_part_bytes: int = 8 << 20,
        intra_op_threads: int = 0,
        inter_op_threads: int = -1,
        platform: str = "local",
        processor: str = "",
        cuda_visible_devices: Optional[str] = None,
        init_budget: Optional[float] = None,
        rpc_worker_threads: int = 5,
        rpc_max_queue_size: int = 64,
        rpc_keepalive_ms: int = 60000,
        rpc_rate_limit: float = 0.0,
        max_inflight_bytes: Optional[int] = None,
        max_inflight_bytes_per_client: Optional[int] = None,
        max_requests_per_client: Optional[int] = None,
        signature_max_skew: float = 0.0,
        body_read_timeout: float = 30.0,
        header_read_timeout: float = HEADER_READ_TIMEOUT,
        rpc_batching: bool = False,
        rpc_max_batch_size: int = 16,
        rpc_max_batch_timeout_ms: int = 50,
        server_timing: bool = True,
        workers: int = 1,
        workers_set: bool = False,
        platform_memory: int = 0,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.model_path = model_path
        self.service_name = service_name
        self.service_token = service_token
        self.max_body_bytes = max_body_bytes
        # JSON turns into Python objects first: 3-6x its size for numbers, up to ~30x for
        # strings (measured), so its own cap
        self.max_json_bytes = max_json_bytes
        self.model_cache_dir = model_cache_dir or default_cache_dir(environ or {})
        self.log_level = log_level
        self.warm_up_data_path = warm_up_data_path
        self.warm_up_count = warm_up_count
        self.load_timeout = load_timeout
        self.s3_endpoint_url = s3_endpoint_url
        self.oss_endpoint = oss_endpoint
        self.max_extract_bytes = max_extract_bytes
        self.max_archive_members = max_archive_members
        # parallel ranged reads of a model (storage.ranges): object stores cap one stream
        self.fetch_connections = fetch_connections
        self.fetch_part_bytes = fetch_part_bytes
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.platform = platform
        self.processor = processor  # set in the images packaging/build makes
        self.cuda_visible_devices = cuda_visible_devices
        # seconds an init hook may spend loading before it returns and lets the first request
        # finish the load (Lambda's init phase is capped at 10 s)
        self.init_budget = PLATFORM_INIT_BUDGET.get(platform, 600.0) if init_budget is None \
            else init_budget
        # EAS admission control (metadata.rpc.*), per worker process
        self.rpc_worker_threads = rpc_worker_threads
        self.rpc_max_queue_size = rpc_max_queue_size
        self.rpc_keepalive_ms = rpc_keepalive_ms
        self.rpc_rate_limit = rpc_rate_limit
        # request bodies in flight per worker: four of the largest allowed by default
        self.max_inflight_bytes = 4 * max_body_bytes if max_inflight_bytes is None \
            else max_inflight_bytes
        # what one client address may hold of it: half where clients reach us directly; all
        # of it behind a platform's front end, where every client has the front end's address
        self.max_inflight_bytes_per_client = max_inflight_bytes_per_client
        if max_inflight_bytes_per_client is None:
            self.max_inflight_bytes_per_client = self.max_inflight_bytes // 2 \
                if platform == "local" else self.max_inflight_bytes
        # and of the requests admitted or queued (0, the default: no bound; a benchmark, a
        # batch job or a front end legitimately sends everything from one address)
        self.max_requests_per_client = max_requests_per_client or 0
        self.signature_max_skew = signature_max_skew  # seconds; 0 = no freshness check
        self.body_read_timeout = body_read_timeout  # seconds a body may take to arrive
        self.header_read_timeout = header_read_timeout  # and a request's head (0: no limit)
        # adaptive batching (metadata.rpc.batching, max_batch_size, max_batch_timeout)
        self.rpc_batching = rpc_batching
        self.rpc_max_batch_size = rpc_max_batch_size
        self.rpc_max_batch_timeout_ms = rpc_max_batch_timeout_ms
        self.server_timing = server_timing  # Server-Timing header on predictions
        self.workers = workers  # worker processes per instance (functions-framework's WORKERS)
        self.workers_set = workers_set  # WORKERS was given; else ``sizing`` may lower it
        self.platform_memory = platform_memory  # bytes the platform says we have; 0: not said
        # Credentials and other platform settings stay in the mapping the config came from,
        # so storage backends read them through the config, never from os.environ directly.
        self.environ: Dict[str, str] = dict(environ or {})

    def admission_limits(self) -> Limits:
        return Limits(workers=in_service(self.rpc_batching, self.rpc_worker_threads,
                                             self.rpc_max_batch_size),
                      queue_size=self.rpc_max_queue_size,
                      keepalive=self.rpc_keepalive_ms / 1000.0, rate_limit=self.rpc_rate_limit,
                      inflight_bytes=self.max_inflight_bytes,
                      peer_inflight_bytes=self.max_inflight_bytes_per_client,
                      peer_requests=self.max_requests_per_client)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Config:
        def get(key: str, parse: Callable[[str, str], Any], default: Any) -> Any:
            raw = environ.get(key)
            if raw is None or raw.strip() == "":
                return default
            return parse(key, raw)

        def text(key: str, value: str) -> str:
            return value.strip()

        def level(key: str, value: str) -> str:
            v = value.strip().upper()
            if v not in LOG_LEVELS:
                raise ConfigError(
                    f"{key}={value!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}"
                )
            return v

        def body_limit(key: str, value: str) -> int:
            n = parse_size(key, value)
            if n <= 0:
                raise ConfigError(f"{key}={value!r} must be more than 0 bytes")
            return n

        def service_name(key: str, value: str) -> str:
            v = value.strip()
            if not re.match(r"^[A-Za-z0-9_.-]+$", v):
                raise ConfigError(
                    f"{key}={value!r} is not a service name; expected letters, digits, '_', '-', '.'"
                )
            return v

        def token(key: str, value: str) -> str:
            return value.strip()

        workers = get("WORKERS", _workers, None)
        kwargs: Dict[str, Any] = dict(
            model_path=get("MODEL_PATH", text, ""),
            service_name=get("SERVICE_NAME", service_name, ""),
            service_token=get("SERVICE_TOKEN", token, ""),
            max_body_bytes=get("MAX_BODY_BYTES", body_limit, 64 << 20),
            max_json_bytes=get("MAX_JSON_BYTES", body_limit, 8 << 20),
            model_cache_dir=get("MODEL_CACHE_DIR", text, ""),
            log_level=get("LOG_LEVEL", level, "INFO"),
            warm_up_data_path=get("WARM_UP_DATA_PATH", text, ""),
            warm_up_count=get("WARM_UP_COUNT", _positive_int, 5),
            load_timeout=get("MODEL_LOAD_TIMEOUT", _seconds, 600.0),
            s3_endpoint_url=get("S3_ENDPOINT_URL", text, ""),
            oss_endpoint=get("OSS_ENDPOINT", text, ""),
            max_extract_bytes=get("MAX_EXTRACT_BYTES", parse_size, 16 << 30),
            max_archive_members=get("MAX_ARCHIVE_MEMBERS", _positive_int, 100_000),
            fetch_connections=get("FETCH_CONNECTIONS", _connections, 16),
            fetch_part_bytes=get("FETCH_PART_BYTES", _part_size, 8 << 20),
            intra_op_threads=get("TF_INTRA_OP_THREADS", _positive_int, 0),
            inter_op_threads=get("TF_INTER_OP_THREADS", _thread_count, -1),
            platform=detect_platform(environ),
            processor=get("TFSERVERLESS_PROCESSOR", text, ""),
            cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
            init_budget=get("INIT_LOAD_BUDGET", _seconds, None),
            rpc_worker_threads=get("RPC_WORKER_THREADS", _threads, 5),
            rpc_max_queue_size=get("RPC_MAX_QUEUE_SIZE", _positive_int, 64),
            rpc_keepalive_ms=get("RPC_KEEPALIVE", _positive_int, 60000),
            rpc_rate_limit=get("RPC_RATE_LIMIT", _seconds, 0.0),
            max_inflight_bytes=get("MAX_INFLIGHT_BYTES", parse_size, None),
            max_inflight_bytes_per_client=get("MAX_INFLIGHT_BYTES_PER_CLIENT", parse_size, None),
            max_requests_per_client=get("MAX_REQUESTS_PER_CLIENT", _positive_int, None),
            signature_max_skew=get("SIGNATURE_MAX_SKEW", _seconds, 0.0),
            body_read_timeout=get("BODY_READ_TIMEOUT", _seconds, 30.0),
            header_read_timeout=header_read_timeout(environ),
            rpc_batching=get("RPC_BATCHING", _flag, False),
            rpc_max_batch_size=get("RPC_MAX_BATCH_SIZE", _batch_rows, 16),
            rpc_max_batch_timeout_ms=get("RPC_MAX_BATCH_TIMEOUT", _positive_int, 50),
            server_timing=get("SERVER_TIMING", _flag, True),
            workers=workers or default_workers(),
            workers_set=workers is not None,
            platform_memory=platform_memory(environ),
            environ=environ,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def require_model_path(self) -> str:
        if not self.model_path:
            raise ConfigError(
                "MODEL_PATH is not set; expected a SavedModel directory, archive or "
                "oss:// s3:// http(s):// URL"
            )
        return self.model_path


__all__ = ["Config", "detect_platform", "header_read_timeout", "parse_size"]
