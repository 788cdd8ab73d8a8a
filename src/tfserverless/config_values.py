"""The value parsers ``config`` reads every setting with: each takes the key and the raw value
and returns the value or raises a one-line ``ConfigError`` naming both and what was expected
(secrets are never passed here, so never echoed)."""

from __future__ import annotations

import re
from typing import Callable

from .errors import ConfigError

SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_size(key: str, value: str) -> int:
    """``'64MiB'``, ``'65536'``, ``'1g'`` -> bytes; anything else is a one-line ConfigError."""
    m = SIZE_RE.match(value)
    if not m:
        raise ConfigError(
            f"{key}={value!r} is not a size; expected bytes like 67108864 or 64MiB"
        )
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * SIZE_UNITS[unit]


def positive_int(key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not an integer; expected a whole number") from None
    if n < 0:
        raise ConfigError(f"{key}={value!r} is negative; expected 0 or more")
    return n


def connections(key: str, value: str) -> int:
    n = positive_int(key, value)
    if not 1 <= n <= 64:
        raise ConfigError(f"{key}={value!r} is out of range; expected 1 (one stream) to 64 "
                          "connections")
    return n


def part_size(key: str, value: str) -> int:
    n = parse_size(key, value)
    if not 64 << 10 <= n <= 1 << 30:
        raise ConfigError(f"{key}={value!r} is out of range; expected 64KiB to 1GiB")
    return n


def at_least_one(key: str, value: str) -> int:
    n = positive_int(key, value)
    if n < 1:
        raise ConfigError(f"{key}={value!r} is 0; expected 1 or more")
    return n


#: upper bounds of counts that cost threads, processes or memory (``render`` checks them too)
MAX_WORKER_THREADS, MAX_BATCH_ROWS, MAX_WORKERS = 1024, 4096, 256


def at_most(hi: int, why: str) -> Callable[[str, str], int]:
    """1..``hi``: a count whose size costs threads, processes or memory up front."""
    def parse(key: str, value: str) -> int:
        n = at_least_one(key, value)
        if n > hi:
            raise ConfigError(f"{key}={value!r} is over {hi}; expected 1 to {hi} ({why})")
        return n
    return parse


threads = at_most(MAX_WORKER_THREADS, "threads per worker")
batch_rows = at_most(MAX_BATCH_ROWS, "rows per model call")
workers = at_most(MAX_WORKERS, "processes, each with its own model copy")


def thread_count(key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not an integer; expected -1, 0 or a thread count") from None
    if n < -1:
        raise ConfigError(f"{key}={value!r} is below -1; expected -1 (caller thread), 0 or more")
    return n


def seconds(key: str, value: str) -> float:
    try:
        n = float(value.strip())
    except ValueError:
        n = float("nan")
    if n != n:  # not a number, or NaN
        raise ConfigError(f"{key}={value!r} is not a number; expected seconds like 30")
    if n < 0:
        raise ConfigError(f"{key}={value!r} is negative; expected 0 or more seconds")
    return n


def flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={value!r} is not a switch; expected true or false")


def port(key: str, value: str) -> int:
    n = positive_int(key, value)
    if n > 65535:
        raise ConfigError(f"{key}={value!r} is not a port; expected 1 to 65535 (0: none)")
    return n


#: what ``tfserverless serve`` speaks on ``PORT``: HTTP/1.1 (every HTTP protocol), or gRPC
#: over cleartext HTTP/2 for platforms that route one port (the gRPC services only)
SERVE_PROTOCOLS = ("http", "grpc")


def serve_protocol(key: str, value: str) -> str:
    v = value.strip().lower()
    if v not in SERVE_PROTOCOLS:
        raise ConfigError(f"{key}={value!r} is not a protocol; expected one of "
                          f"{', '.join(SERVE_PROTOCOLS)}")
    return v


def text(key: str, value: str) -> str:
    return value.strip()


def log_level(key: str, value: str) -> str:
    v = value.strip().upper()
    if v not in LOG_LEVELS:
        raise ConfigError(f"{key}={value!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}")
    return v


def body_limit(key: str, value: str) -> int:
    n = parse_size(key, value)
    if n <= 0:
        raise ConfigError(f"{key}={value!r} must be more than 0 bytes")
    return n


def service_name(key: str, value: str) -> str:
    v = value.strip()
    if not re.match(r"^[A-Za-z0-9_.-]+$", v):
        raise ConfigError(f"{key}={value!r} is not a service name; expected letters, digits, '_', '-', '.'")
    return v


__all__ = ["LOG_LEVELS", "MAX_BATCH_ROWS", "MAX_WORKERS", "MAX_WORKER_THREADS", "SERVE_PROTOCOLS",
           "at_least_one", "at_most", "batch_rows", "body_limit", "connections", "flag",
           "log_level", "parse_size", "part_size", "port", "positive_int", "seconds",
           "serve_protocol", "service_name", "text", "thread_count", "threads", "workers"]
