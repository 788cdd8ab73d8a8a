"""Thin adapters: a platform's event -> ``messages.Request``; ``messages.Response`` -> its reply.

Each adapter decodes, calls ``Service.handle`` and encodes: nothing more.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ..errors import BadRequest, PayloadTooLarge, RequestTimeout, TFServerlessError
from ..messages import PayloadLimit, Request, Response, error_response
from ..serving.admission import Held
from ..serving.routes.common import Routed
from ..serving.service import Service

log = logging.getLogger("tfserverless")


def event_body(body: Any, base64_encoded: Any) -> bytes:
    """A JSON event's body (Lambda's, FC's): base64-decoded when flagged, text as UTF-8; a
    body that is neither text nor bytes (a number would make that many zero bytes) is a 400."""
    if body is None or body == "":
        return b""
    if not isinstance(body, (str, bytes, bytearray)):
        raise BadRequest(f"the event's body is a JSON {type(body).__name__}; expected a string "
                         "(text, or base64 with isBase64Encoded)")
    if base64_encoded:
        try:
            return base64.b64decode(body)
        except (ValueError, TypeError):
            raise BadRequest("isBase64Encoded body is not valid base64") from None
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON's "\ud800" decodes to one
            raise BadRequest("the event's body is not valid UTF-8 text; expected UTF-8, or "
                             "base64 with isBase64Encoded") from None
    return bytes(body)


def from_event(decode: Callable[[Any], Request], event: Any, what: str) -> Request:
    """``decode(event)``; an event whose parts have the wrong JSON types (a list for headers,
    a number for a method, a string for requestContext) is a 400 naming it, not our 500 (a
    Lambda or FC event may come from any caller allowed to invoke the function)."""
    try:
        return decode(event)
    except TFServerlessError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        raise BadRequest(f"malformed {what} event ({type(e).__name__}); expected headers and "
                         "query parameters as objects of strings, method and path as "
                         "strings") from None


def event_reply_body(resp: Response) -> Tuple[str, bool]:
    """A reply's body for a JSON event reply: (text, False), or (base64, True) if binary."""
    if resp.is_binary:
        return base64.b64encode(resp.body).decode("ascii"), True
    return resp.body.decode("utf-8", "replace"), False


#: what a JSON event reply's envelope (status, headers) may add to its body: the cheap bound
ENVELOPE_SLACK = 64 << 10


def reply_size(reply: Dict[str, Any]) -> int:
    """A JSON event reply's size as the runtime sends it back: JSON, UTF-8, non-ASCII as is."""
    return len(json.dumps(reply, ensure_ascii=False).encode("utf-8"))


def reply_within(encode: Callable[[Response], Dict[str, Any]], resp: Response,
                 limit: PayloadLimit, protocol: str = "") -> Dict[str, Any]:
    """``encode(resp)``, or a 413 in its place when that JSON reply is over ``limit`` (what
    the platform takes back: a text body under the request cap can be over it once its quotes
    are escaped, a binary one once base64 and the envelope are added); measured only when a
    cheap bound (JSON writes a character as at most six) says it might be over."""
    reply = encode(resp)
    body = reply.get("body") or ""
    b64 = bool(reply.get("isBase64Encoded"))
    if len(body) * (1 if b64 else 6) + ENVELOPE_SLACK <= limit.nbytes:
        return reply
    size = reply_size(reply)
    if size <= limit.nbytes:
        return reply
    err = PayloadTooLarge(
        f"response of {len(resp.body)} bytes is {size} bytes as the platform's reply (JSON"
        f"{', base64' if b64 else '-escaped'}), over {limit.name} limit of {limit.nbytes} bytes; "
        "ask for fewer outputs (output_filter) or a smaller batch")
    return encode(error_response(err, protocol))


def declared_length(value: Any) -> int:
    """A Content-Length header's value as an int; absent or malformed is 0 (unknown)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
    return int(text) if text.isdigit() and text.isascii() else 0


CHUNK = 64 << 10  # bytes read (and counted in flight) at a time


def read_body(stream: Any, declared: int, limit: int,
              count: Optional[Callable[[int], None]] = None) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to know a body is too large, never more;
    ``count(n)`` is told of each chunk as it arrives (it may refuse with a 450).  A body the
    server cannot read (malformed chunked framing, a client gone mid-body) is a 400, never
    the server's own error."""
    if declared > limit:
        return b""
    want = limit + 1 if declared <= 0 else declared
    chunks = []
    while want > 0:
        try:
            chunk = stream.read(min(CHUNK, want))
        except TFServerlessError:
            raise
        except Exception as e:  # gunicorn's InvalidChunkSize, NoMoreData, werkzeug's ...
            raise BadRequest(f"request body could not be read ({type(e).__name__}); expected "
                             "a complete body in valid HTTP framing") from None
        if not chunk:
            break
        if count is not None:
            count(len(chunk))
        chunks.append(bytes(chunk))
        want -= len(chunk)
    return b"".join(chunks)


def admit_head(service: Service, req: Request, peer: str) -> Union[Response, Tuple[Routed, Held]]:
    """What every server does before reading a body: route and authorise the request on its
    headers (a refusal is answered at once: a client without the token is never read and
    holds nothing), then reserve the bytes its declared body will hold (450 now rather than
    half-way through).  The reply to send, or (what routing decided, the bytes held: the
    caller gives them back)."""
    try:
        routed = service.route(req)
    except TFServerlessError as e:
        return service.route_error(req, e)
    admission = service.admission
    held = admission.held(peer)
    declared = req.content_length or 0
    if declared:
        try:
            admission.reserve_bytes(held, min(declared, service.config.max_body_bytes + 1),
                                    count=False)
        except TFServerlessError as e:
            admission.release_bytes(held)
            return service.route_error(req, e)
    return routed, held


def handle_sync(service: Service, req: Request, stream: Any, peer: str = "") -> Response:
    """A sync server's request whose body is still in ``stream``: routed and authorised on
    its headers first (a client without the token is answered before its body is read and
    holds nothing), then the body read and counted in flight as it arrives, then served.

    A sync server cannot interrupt a read that blocks: at ``BODY_READ_TIMEOUT`` the bytes a
    stalled body holds are given back (so it cannot hold the budget for good), and the
    request is answered 408 if its read ever returns."""
    admitted = admit_head(service, req, peer)
    if isinstance(admitted, Response):
        return admitted
    routed, held = admitted
    cfg, admission = service.config, service.admission
    expired: List[bool] = []

    def count(n: int) -> None:
        if expired:
            raise RequestTimeout(f"request body not complete within {cfg.body_read_timeout:g}s "
                                 "(BODY_READ_TIMEOUT)")
        admission.reserve_bytes(held, n)

    def expire() -> None:
        expired.append(True)
        admission.release_bytes(held)

    declared = req.content_length or 0
    # a body that may take more than one read gets a timer (a thread: not worth it for the
    # rest, which hold at most one chunk)
    long = declared > CHUNK or (not declared and "transfer-encoding" in req.headers)
    timer = threading.Timer(cfg.body_read_timeout, expire) \
        if cfg.body_read_timeout > 0 and long else None
    try:
        if timer is not None:
            timer.daemon = True
            timer.start()
        req.body = read_body(stream, declared, cfg.max_body_bytes, count)
        if timer is not None:
            timer.cancel()
        count(0)  # past the deadline meanwhile: 408
        return service.handle(req, routed, held)
    except TFServerlessError as e:  # 450 in flight, 408 past the deadline, 400 unreadable
        return service.route_error(req, e)
    finally:
        if timer is not None:
            timer.cancel()
        admission.release_bytes(held)


def load_in_init(service: Service, hook: str) -> None:
    """Load and warm up within the platform's init budget; past it, return and let the first
    request finish the load (an init phase that overruns would fail the instance)."""
    budget = service.config.init_budget
    t0 = time.monotonic()
    if service.holder.wait(budget):
        requests = service.warmup_requests()
        t1 = time.perf_counter()
        sent = 0
        for req in requests:  # then through the path traffic takes, in the thread it runs in
            if time.monotonic() - t0 >= budget:  # the budget is the load's and all its warm-up's
                log.warning("%s: init budget of %.0fs spent; %d of %d warm-up request(s) sent "
                            "through the service (INIT_LOAD_BUDGET)", hook, budget, sent,
                            len(requests))
                break
            status = service.handle(req).status
            sent += 1
            if status != 200:
                log.warning("%s: warm-up through the service: POST / answered %d", hook, status)
        if sent:
            log.info("%s: warm-up through the service: %d request(s) in %.1f ms", hook,
                     sent, (time.perf_counter() - t1) * 1e3)
        log.info("%s: model ready in %.2fs", hook, time.monotonic() - t0)
    elif service.holder.state == "loading":
        log.warning("%s: init budget of %.0fs spent and the model is still loading; the first "
                    "request will wait for it (INIT_LOAD_BUDGET)", hook, budget)
    else:
        log.error("%s: model not loaded: %s", hook, service.holder.error)
