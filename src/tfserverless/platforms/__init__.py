"""Thin adapters: a platform's event -> ``messages.Request``; ``messages.Response`` -> its reply.

Each adapter decodes, calls ``Service.handle`` and encodes: nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator

from ..service import Service

log = logging.getLogger("tfserverless")


def declared_length(value: Any) -> int:
    """A Content-Length header's value as an int; absent or malformed is 0 (unknown)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
    return int(text) if text.isdigit() and text.isascii() else 0


@contextlib.contextmanager
def body_in_flight(service: Service, declared: int) -> Iterator[None]:
    """Count a body against ``MAX_INFLIGHT_BYTES`` (450 beyond) before it is read."""
    n = min(declared, service.config.max_body_bytes + 1)
    service.admission.reserve_bytes(n)
    try:
        yield
    finally:
        service.admission.release_bytes(n)


def read_body(stream: Any, declared: int, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to know a body is too large, never more."""
    if declared > limit:
        return b""
    return bytes(stream.read(limit + 1) if declared <= 0 else stream.read(declared))


def load_in_init(service: Service, hook: str) -> None:
    """Load and warm up within the platform's init budget; past it, return and let the first
    request finish the load (an init phase that overruns would fail the instance)."""
    budget = service.config.init_budget
    t0 = time.monotonic()
    if service.holder.wait(budget):
        log.info("%s: model ready in %.2fs", hook, time.monotonic() - t0)
    elif service.holder.state == "loading":
        log.warning("%s: init budget of %.0fs spent and the model is still loading; the first "
                    "request will wait for it (INIT_LOAD_BUDGET)", hook, budget)
    else:
        log.error("%s: model not loaded: %s", hook, service.holder.error)
