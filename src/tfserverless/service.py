"""Transport-agnostic core: ``Request -> Response`` (schema, predict, health).

Platform adapters build a ``Request`` from their event, call ``Service.handle`` and encode the
``Response``; everything else (routing, auth, limits, errors -> status) happens here, once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import codec
from .config import Config
from .errors import (
    BadRequest,
    MethodNotAllowed,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    TFServerlessError,
    Unauthorized,
)

log = logging.getLogger("tfserverless")

GATEWAY_PREFIX = "/api/predict/"
PROTOBUF = "application/octet-stream"


class Request:
    """An HTTP request as every platform can describe it (header names any case)."""

    __slots__ = ("body", "content_length", "headers", "method", "path", "payload_limit", "query")

    def __init__(
        self,
        method: str,
        path: str,
        headers: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        *,
        query: Optional[Mapping[str, str]] = None,
        content_length: Optional[int] = None,
        payload_limit: Optional[PayloadLimit] = None,
    ) -> None:
        self.method = method.upper()
        self.path = path or "/"
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        self.body = body
        self.query = dict(query or {})
        # what the client declared; lets adapters refuse a huge body before reading it
        self.content_length = content_length
        # the platform's own cap on request and response bodies (Lambda: 6 MB), if any
        self.payload_limit = payload_limit


class PayloadLimit:
    """A platform's synchronous payload cap, named in the 413 it causes."""

    __slots__ = ("name", "nbytes")

    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def is_binary(self) -> bool:
        return self.headers.get("Content-Type", "").startswith(PROTOBUF)

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes, {self.headers})"


def json_response(status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> Response:
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return Response(status, json.dumps(data, indent=1).encode() + b"\n", h)


def error_response(err: TFServerlessError) -> Response:
    """The one place an error becomes a reply: its status, one line of text."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    headers.update(err.headers)
    return Response(err.status, (err.message + "\n").encode("utf-8"), headers)


# --- auth ------------------------------------------------------------------------------------


def eas_signature(token: str, *, method: str, content_md5: str, content_type: str,
                  date: str, resource: str) -> str:
    """The ``EAS <sig>`` value the official SDK sends (HMAC-SHA1 over five lines)."""
    msg = f"{method}\n{content_md5}\n{content_type}\n{date}\n{resource}".strip()
    digest = hmac.new(token.encode("utf-8"), msg.encode("utf-8"), hashlib.sha1).digest()
    return "EAS " + base64.b64encode(digest).decode()


def check_auth(token: str, req: Request, resource: str) -> None:
    """Accept the raw token or the SDK's signed form; compare in constant time."""
    if not token:
        return
    got = req.headers.get("authorization", "").strip()
    if not got:
        raise Unauthorized(
            "missing Authorization header; expected the service token or the EAS SDK's signature"
        )
    if hmac.compare_digest(got.encode("utf-8"), token.encode("utf-8")):
        return
    if got.startswith("EAS "):
        md5 = req.headers.get("content-md5", "")
        if md5 and not hmac.compare_digest(md5, hashlib.md5(req.body).hexdigest()):
            raise Unauthorized("Content-MD5 does not match the body; expected the body's hex MD5")
        want = eas_signature(
            token,
            method=req.method,
            content_md5=md5,
            content_type=req.headers.get("content-type", ""),
            date=req.headers.get("date", ""),
            resource=resource,
        )
        if hmac.compare_digest(got.encode("utf-8"), want.encode("utf-8")):
            return
        raise Unauthorized(
            f"EAS signature does not match; expected HMAC-SHA1 of method, Content-MD5, "
            f"Content-Type, Date and {resource} with the service token"
        )
    raise Unauthorized("Authorization does not match the service token")


# --- the model, loaded once, lazily ------------------------------------------------------------


class ModelHolder:
    """Single-flight lazy load with retry backoff.

    The first caller starts one background load; others wait for it (up to ``wait``) or get
    503 with Retry-After.  A failed load is retried by a later request after a backoff.
    """

    def __init__(self, loader: Callable[[], Any], *, wait: float = 600.0,
                 backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self._loader = loader
        self._wait = wait
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.model: Any = None
        self.error: Optional[str] = None
        self.failures = 0
        self._retry_at = 0.0
        self.started_at: Optional[float] = None
        self.loaded_at: Optional[float] = None
        self.after_load: List[Callable[[Any], None]] = []

    @property
    def state(self) -> str:
        if self.model is not None:
            return "ready"
        if self._thread is not None and self._thread.is_alive():
            return "loading"
        return "failed" if self.error else "idle"

    def start(self) -> None:
        """Begin loading in the background if nothing is loaded or loading (idempotent)."""
        with self._lock:
            if self.model is not None or (self._thread is not None and self._thread.is_alive()):
                return
            if self.error and time.monotonic() < self._retry_at:
                return
            self._done.clear()
            self.started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="model-load", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            model = self._loader()
            for hook in self.after_load:
                hook(model)
            self.model = model
            self.error = None
            self.loaded_at = time.monotonic()
        except TFServerlessError as e:
            self._failed(e.message)
        except Exception as e:  # a load must never kill the worker: report it and retry later
            log.exception("model load failed")
            self._failed(f"{type(e).__name__}: {e}")
        finally:
            self._done.set()

    def _failed(self, message: str) -> None:
        self.failures += 1
        delay = min(self._max_backoff, self._backoff * (2 ** (self.failures - 1)))
        self._retry_at = time.monotonic() + delay
        self.error = message
        log.error("model not loaded (attempt %d, retry in %.0fs): %s", self.failures, delay, message)

    def wait(self, seconds: float) -> bool:
        """Start if needed and wait up to ``seconds``; True when the model is ready."""
        self.start()
        self._done.wait(max(0.0, seconds))
        return self.model is not None

    def load_now(self) -> Any:
        """Load in the calling thread's time (init hooks): start, then wait."""
        self.start()
        return self.get(wait=self._wait)

    def get(self, *, wait: Optional[float] = None) -> Any:
        if self.model is not None:
            return self.model
        self.start()
        self._done.wait(self._wait if wait is None else wait)
        if self.model is not None:
            return self.model
        if self.state == "loading":
            raise ModelUnavailable("the model is still loading; retry shortly", retry_after=2)
        retry = max(1, int(self._retry_at - time.monotonic() + 0.999))
        raise ModelUnavailable(f"the model could not be loaded: {self.error}", retry_after=retry)


# --- the service -----------------------------------------------------------------------------


#: a request expected to take less than this runs on an async server's event loop (see
#: ``Service.runs_inline``): 2 ms of delay for requests queued behind it is the most we accept
INLINE_SECONDS = 0.002


class Service:
    def __init__(self, config: Config, holder: ModelHolder) -> None:
        self.config = config
        self.holder = holder
        self.warmup: Dict[str, Any] = {}
        self._first_request_logged = False
        # moving averages of recent predicts: seconds and body bytes (None until the first)
        self._predict_seconds: Optional[float] = None
        self._predict_bytes = 1.0

    def runs_inline(self, req: Request) -> bool:
        """Whether an async server should call ``handle`` on its event loop instead of handing
        it to a thread.  A small model answers in less time than that hand-off costs; a slow
        one must not stall the loop.  So: only once the model is loaded (before, ``handle``
        may wait for the load) and when recent predicts, scaled to this body's size, took
        under ``INLINE_SECONDS``."""
        if self.holder.model is None:
            return False
        if not req.body:
            return True  # schema, health, an error before any work
        seconds = self._predict_seconds
        if seconds is None:
            return False
        return seconds * max(1.0, len(req.body) / self._predict_bytes) < INLINE_SECONDS

    def _observe(self, seconds: float, nbytes: int) -> None:
        if self._predict_seconds is None:
            self._predict_seconds, self._predict_bytes = seconds, float(max(nbytes, 1))
        else:  # races between threads only blur an estimate
            self._predict_seconds += 0.2 * (seconds - self._predict_seconds)
            self._predict_bytes += 0.2 * (max(nbytes, 1) - self._predict_bytes)

    # routing ---------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            resp = self._route(req)
            cap = req.payload_limit
            if cap is not None and len(resp.body) > cap.nbytes:
                raise PayloadTooLarge(
                    f"response of {len(resp.body)} bytes is over {cap.name}'s limit of "
                    f"{cap.nbytes} bytes; ask for fewer outputs (output_filter) or a smaller batch")
            return resp
        except TFServerlessError as e:
            if e.status >= 500:
                log.warning("%s %s -> %d: %s", req.method, req.path, e.status, e.message)
            return error_response(e)
        except Exception as e:  # our bug, not the client's: log it, answer one line
            log.exception("unexpected error on %s %s", req.method, req.path)
            return error_response(TFServerlessError(f"internal error: {type(e).__name__}"))

    def _route(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path == "/healthz":
            if req.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{req.method} /healthz; expected GET",
                                       headers={"Allow": "GET, HEAD"})
            return self.health()
        if path == "/":
            resource = GATEWAY_PREFIX + (self.config.service_name or "")
        elif path.startswith(GATEWAY_PREFIX.rstrip("/")) and path.count("/") == 3:
            name = path[len(GATEWAY_PREFIX):]
            if self.config.service_name and name != self.config.service_name:
                raise NotFound(
                    f"service '{name}' not found; this function serves "
                    f"'{self.config.service_name}' at {GATEWAY_PREFIX}{self.config.service_name}"
                )
            resource = path
        else:
            raise NotFound(
                f"no route {req.path}; expected POST / or POST {GATEWAY_PREFIX}<service>, "
                "GET /healthz"
            )
        if req.method not in ("GET", "POST", "HEAD"):
            raise MethodNotAllowed(f"{req.method} {req.path}; expected POST (or GET for the schema)",
                                   headers={"Allow": "GET, POST"})
        self._check_size(req)
        check_auth(self.config.service_token, req, resource)
        if req.method in ("GET", "HEAD") or not req.body:
            return self.schema(req.query.get("signature_name", ""))
        return self.predict(req)

    def _check_size(self, req: Request) -> None:
        limit = self.config.max_body_bytes
        n = max(len(req.body), req.content_length or 0)
        if n > limit:
            raise PayloadTooLarge(f"request body of {n} bytes is over the limit of {limit} bytes "
                                  "(MAX_BODY_BYTES)")
        cap = req.payload_limit
        if cap is not None and n > cap.nbytes:
            raise PayloadTooLarge(f"request body of {n} bytes is over {cap.name}'s limit of "
                                  f"{cap.nbytes} bytes; send smaller batches")

    # endpoints -------------------------------------------------------------------------------

    def schema(self, signature_name: str = "") -> Response:
        model = self.holder.get()
        sig = model.signature(signature_name)
        return Response(200, codec.signature_json_bytes(sig), {"Content-Type": "application/json"})

    def predict_arrays(self, body: bytes) -> Dict[str, Any]:
        return self.run_predict(self.holder.get(), body)

    def run_predict(self, model: Any, body: bytes) -> Dict[str, Any]:
        """Decode, validate, run: the one path traffic and warm-up share."""
        if _looks_like_json(body):
            raise BadRequest(
                "JSON bodies are not accepted; expected a serialized PredictRequest protobuf "
                "(proto/predict.proto, Content-Type application/octet-stream), e.g. from the "
                "EAS SDK's TFRequest.to_string()"
            )
        wire = codec.decode_request(body)
        sig = model.signature(wire.signature_name)
        feeds = codec.feeds_for_signature(wire, sig)
        outputs = codec.output_names(wire, sig)
        result: Dict[str, Any] = model.run(sig, feeds, outputs)
        return result

    def predict(self, req: Request) -> Response:
        t0 = time.perf_counter()
        outputs = self.predict_arrays(req.body)
        resp = Response(200, codec.encode_response(outputs), {"Content-Type": PROTOBUF})
        self._observe(time.perf_counter() - t0, len(req.body))
        if not self._first_request_logged:
            self._first_request_logged = True
            w = self.warmup
            log.info("first request: %.1f ms (%s)", (time.perf_counter() - t0) * 1e3,
                     f"after warm-up of {w['replayed']} replays" if w.get("replayed")
                     else "no warm-up")
        return resp

    # warm-up ---------------------------------------------------------------------------------

    def warm_up(self, model: Any) -> None:
        """Replay the warm-up requests ``WARM_UP_COUNT`` times each through ``run_predict``.

        Runs as the holder's after-load hook, so readiness waits for it.  A failing request is
        logged with its reason and recorded for /healthz; it never stops the service."""
        from . import storage, warmup

        info: Dict[str, Any] = {"source": "", "requests": 0, "replayed": 0, "failed": 0,
                                "errors": []}
        self.warmup = info
        t0 = time.perf_counter()
        try:
            source, bodies = warmup.load_requests(self.config, model.path, storage.read_bytes)
        except TFServerlessError as e:
            info["errors"].append(e.message)
            log.error("warm-up data not usable: %s", e.message)
            return
        info.update(source=storage.redact(source), requests=len(bodies))
        first: List[float] = []
        for i, body in enumerate(bodies):
            for n in range(self.config.warm_up_count):
                t = time.perf_counter()
                try:
                    self.run_predict(model, body)
                    info["replayed"] += 1
                    if n == 0:
                        first.append(time.perf_counter() - t)
                except Exception as e:  # a warm-up failure is reported, never fatal
                    msg = e.message if isinstance(e, TFServerlessError) else \
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    info["failed"] += 1
                    if len(info["errors"]) < 5:
                        info["errors"].append(f"request {i + 1}: {msg}")
                    log.error("warm-up request %d failed: %s", i + 1, msg)
                    break
        info["seconds"] = round(time.perf_counter() - t0, 3)
        if bodies:
            log.info("warm-up: %d request(s) x %d from %s in %.2fs; first replay %.1f ms, "
                     "failed %d", len(bodies), self.config.warm_up_count, info["source"],
                     info["seconds"], first[0] * 1e3 if first else float("nan"), info["failed"])

    def health(self) -> Response:
        h = self.holder
        h.start()  # a readiness probe is what first starts the load on an idle instance
        info: Dict[str, Any] = {"status": h.state, "pid": os.getpid()}
        if h.model is not None:
            info.update(
                signatures=sorted(h.model.signatures),
                default_signature=h.model.default_signature,
                tensorflow=h.model.tf_version,
            )
        if h.error:
            info["error"] = h.error
        if self.warmup:
            info["warm_up"] = self.warmup
        return json_response(200 if h.model is not None else 503, info,
                             None if h.model is not None else {"Retry-After": "1"})


def _looks_like_json(body: bytes) -> bool:
    # '{' and '[' would open protobuf groups (fields 15 and 11), which PredictRequest never
    # has, so such a body is not protobuf and is most likely JSON.
    return body[:64].lstrip()[:1] in (b"{", b"[")
