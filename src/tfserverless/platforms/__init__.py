"""Thin adapters: a platform's event -> ``messages.Request``; ``messages.Response`` -> its reply.

Each adapter decodes, calls ``Service.handle`` and encodes: nothing more.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ..errors import TFServerlessError
from ..messages import Request, Response
from ..service import Service

log = logging.getLogger("tfserverless")


def declared_length(value: Any) -> int:
    """A Content-Length header's value as an int; absent or malformed is 0 (unknown)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
    return int(text) if text.isdigit() and text.isascii() else 0


CHUNK = 64 << 10  # bytes read (and counted in flight) at a time


def read_body(stream: Any, declared: int, limit: int,
              count: Optional[Callable[[int], None]] = None) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to know a body is too large, never more;
    ``count(n)`` is told of each chunk as it arrives (it may refuse with a 450)."""
    if declared > limit:
        return b""
    want = limit + 1 if declared <= 0 else declared
    chunks = []
    while want > 0:
        chunk = stream.read(min(CHUNK, want))
        if not chunk:
            break
        if count is not None:
            count(len(chunk))
        chunks.append(bytes(chunk))
        want -= len(chunk)
    return b"".join(chunks)


def handle_sync(service: Service, req: Request, stream: Any, peer: str = "") -> Response:
    """A sync server's request whose body is still in ``stream``: routed and authorised on
    its headers first (a client without the token is answered before its body is read and
    holds nothing), then the body read and counted in flight as it arrives, then served."""
    try:
        routed = service.route(req)
    except TFServerlessError as e:
        return service.route_error(req, e)
    cfg, admission = service.config, service.admission
    held = admission.held(peer)
    try:
        declared = req.content_length or 0
        if declared:  # refused at once rather than half-way through
            admission.reserve_bytes(held, min(declared, cfg.max_body_bytes + 1), count=False)
        req.body = read_body(stream, declared, cfg.max_body_bytes,
                             lambda n: admission.reserve_bytes(held, n))
        return service.handle(req, routed, held)
    except TFServerlessError as e:  # 450: too many bytes in flight
        return service.route_error(req, e)
    finally:
        admission.release_bytes(held)


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
