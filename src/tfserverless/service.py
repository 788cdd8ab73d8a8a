"""Transport-agnostic routing: ``Request -> Response`` (schema, predict, health).

Platform adapters build a ``Request`` from their event and call ``Service.handle`` (sync
servers, Lambda, FC) or ``await Service.handle_async`` (ASGI); routing, auth, limits,
admission and errors -> status happen here, once.  Health and errors are answered at once;
predictions go through the admission queue, and only admitted ones reach the model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import codec
from .admission import Admission, Watch
from .auth import check_auth
from .batching import Batcher
from .batching_async import AsyncBatcher
from .codec import Signature
from .config import Config
from .errors import (
    BadRequest,
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TFServerlessError,
    Unauthorized,
)
from .loader import ModelHolder, Servable
from .messages import GATEWAY_PREFIX, PROTOBUF, Request, Response, error_response, json_response
from .metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("tfserverless")

#: a request expected to take less than this runs on an async server's event loop (see
#: ``Service.runs_inline``): 2 ms of delay for requests queued behind it is the most we accept
INLINE_SECONDS = 0.002


class Context:
    """What a prediction knows of its way through the service: its deadline, how long it
    queued."""

    __slots__ = ("contended", "deadline", "queued")

    def __init__(self, deadline: float = float("inf")) -> None:
        self.deadline = deadline
        self.queued = 0.0
        self.contended = False  # runs in a thread beside other predictions

class Job:
    """Work that needs the model: a prediction (``admitted``: it goes through the admission
    queue) or a schema read (answered as soon as the model is there)."""

    __slots__ = ("admitted", "run")

    def __init__(self, run: Callable[[Servable, Context], Response], *, admitted: bool) -> None:
        self.run = run
        self.admitted = admitted


#: requests /metrics does not count (probes and scrapes)
UNCOUNTED = frozenset(("/healthz", "/healthz/live", "/metrics"))


class Service:
    def __init__(self, config: Config, holder: ModelHolder,
                 admission: Optional[Admission] = None, metrics: Optional[Metrics] = None) -> None:
        self.config = config
        self.holder = holder
        self.admission = admission or Admission(config.admission_limits())
        self.metrics = metrics or Metrics()
        self.batcher: Optional[Batcher] = None
        self.abatcher: Optional[AsyncBatcher] = None  # ASGI servers' way to wait for it
        if config.rpc_batching:
            self.batcher = Batcher(max_batch_size=config.rpc_max_batch_size,
                                   max_batch_timeout=config.rpc_max_batch_timeout_ms / 1000.0,
                                   max_calls=config.rpc_worker_threads,
                                   timeout_error=self.admission.timeout_error,
                                   observe=self.metrics.runtime)
        # predictions run here on ASGI servers: a thread for each admitted request, none of
        # which health or queued requests ever occupy (threads start on first use)
        self.executor = ThreadPoolExecutor(self.admission.limits.workers, "predict")
        if self.batcher is not None:
            self.abatcher = AsyncBatcher(self.batcher, self.executor, alone_inline=INLINE_SECONDS)
        self.warmup: Dict[str, Any] = {}
        self._first_request_logged = False
        # moving averages of recent predicts: seconds and body bytes (None until the first)
        self._predict_seconds: Optional[float] = None
        self._predict_bytes = 1.0
        self._exact: Dict[str, Callable[[Request], Union[Response, Job]]] = {
            "/healthz": self._health_route,
            "/healthz/live": self._live_route,
            "/metrics": self._metrics_route,
            "/": self._gateway_route,
        }

    def runs_inline(self, req: Request) -> bool:
        """Whether an async server should run a predict on its event loop instead of handing
        it to a thread.  A small model answers in less time than that hand-off costs; a slow
        one must not stall the loop.  So: when recent predicts, scaled to this body's size,
        took under ``INLINE_SECONDS``.  (With batching on, only decode and encode are
        judged so: the model call is the batcher's.)"""
        seconds = self._predict_seconds
        if seconds is None or self.holder.model is None:
            return False
        return seconds * max(1.0, len(req.body) / self._predict_bytes) < INLINE_SECONDS

    def _observe(self, seconds: float, nbytes: int, contended: bool) -> None:
        """``contended``: it ran in a thread beside other predictions, so its wall time may
        include waits for the GIL: such a time may only lower the estimate (else a start
        under load would keep a fast model off the loop for good)."""
        est = self._predict_seconds
        if est is None:
            self._predict_seconds, self._predict_bytes = seconds, float(max(nbytes, 1))
        elif not contended or seconds < est:  # races between threads only blur an estimate
            self._predict_seconds = est + 0.2 * (seconds - est)
            self._predict_bytes += 0.2 * (max(nbytes, 1) - self._predict_bytes)

    # entry points ----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Sync servers: queued requests wait in their own thread."""
        t0 = time.perf_counter()
        try:
            target = self._route(req)
            if isinstance(target, Job):
                target = self._run_sync(target)
            resp = self._capped(req, target)
        except TFServerlessError as e:
            resp = self._error(req, e)
        except Exception as e:  # our bug, not the client's: log it, answer one line
            resp = self._bug(req, e)
        self.count(req, resp.status, t0)
        return resp

    async def handle_async(self, req: Request, watch: Optional[Watch] = None) -> Response:
        """ASGI servers: queued requests and loads are awaited, holding no thread; ``watch()``
        gives a future that completes when the client disconnects, asked for only if the
        request must queue (then ``ClientGone`` is raised: nobody to answer)."""
        t0 = time.perf_counter()
        try:
            target = self._route(req)
            if isinstance(target, Job):
                target = await self._run_async(req, target, watch)
            resp = self._capped(req, target)
        except ClientGone:
            self.count(req, ClientGone.status, t0)
            raise
        except TFServerlessError as e:
            resp = self._error(req, e)
        except Exception as e:
            resp = self._bug(req, e)
        self.count(req, resp.status, t0)
        return resp

    def count(self, req: Request, status: int, t0: float) -> None:
        """Record a request in /metrics (adapters call it for what they answer themselves)."""
        if req.path in UNCOUNTED:
            return
        m, adm = self.metrics, self.admission
        m.request("eas" if req.method == "POST" or req.path.startswith(GATEWAY_PREFIX) else
                  "none", status, time.perf_counter() - t0)
        batcher = self.batcher
        m.gauges(adm.running, adm.waiting + (batcher.waiting if batcher else 0), adm.shed)

    def _error(self, req: Request, e: TFServerlessError) -> Response:
        if e.status >= 500 and e.status != 503:
            log.warning("%s %s -> %d: %s", req.method, req.path, e.status, e.message)
        return error_response(e)

    def _bug(self, req: Request, e: Exception) -> Response:
        log.exception("unexpected error on %s %s", req.method, req.path)
        return error_response(TFServerlessError(f"internal error: {type(e).__name__}"))

    def _capped(self, req: Request, resp: Response) -> Response:
        cap = req.payload_limit
        if cap is not None and len(resp.body) > cap.nbytes:
            raise PayloadTooLarge(
                f"response of {len(resp.body)} bytes is over {cap.name}'s limit of "
                f"{cap.nbytes} bytes; ask for fewer outputs (output_filter) or a smaller batch")
        return resp

    def _load_wait(self, deadline: float) -> float:
        return max(0.0, min(self.config.load_timeout, deadline - time.monotonic()))

    def _run_sync(self, job: Job) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline())
        deadline = ctx.deadline
        if not job.admitted:
            return job.run(self.holder.get(wait=self._load_wait(deadline)), ctx)
        t0 = time.perf_counter()
        adm.acquire(deadline)
        try:
            model = self.holder.get(wait=self._load_wait(deadline))
            adm.check_deadline(deadline)
            ctx.queued = time.perf_counter() - t0
            resp = job.run(model, ctx)
        finally:
            adm.release()
        # a sync server cannot answer while the model runs; past RPC_KEEPALIVE the answer is
        # the 408 an ASGI server would have sent at the deadline
        adm.check_deadline(deadline)
        return resp

    async def _run_async(self, req: Request, job: Job, watch: Optional[Watch]) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline())
        deadline = ctx.deadline
        t0 = time.perf_counter()
        if self.holder.model is None:
            await self.holder.wait_async(self._load_wait(deadline))
        model = self.holder.ready()
        if not job.admitted:
            return job.run(model, ctx)
        await adm.acquire_async(deadline, watch)
        ctx.queued = time.perf_counter() - t0
        if self.abatcher is not None:
            try:
                return await self._predict_batched(req, model, ctx, watch)
            finally:
                adm.release()
        handed_off = False
        try:
            if self.runs_inline(req):
                return job.run(model, ctx)  # cheaper than the hand-off to a thread would be
            ctx.contended = adm.running > 1
            work = self.executor.submit(job.run, model, ctx)
            waiter = asyncio.wrap_future(work)
            waiter.add_done_callback(_retrieve)
            remaining = deadline - time.monotonic()
            done, _ = await asyncio.wait({waiter}, timeout=None if remaining == float("inf")
                                         else max(0.0, remaining))
            if done:
                return work.result()
            handed_off = True  # the model call cannot be stopped: its slot frees when it ends
            work.add_done_callback(lambda _: adm.release())
            raise adm.timeout_error()
        finally:
            if not handed_off:
                adm.release()

    async def _predict_batched(self, req: Request, model: Servable, ctx: Context,
                               watch: Optional[Watch]) -> Response:
        """A prediction through the ``AsyncBatcher``: decode and encode on the loop (in a
        thread when this body looks costly), the model call shared with other requests."""
        assert self.abatcher is not None
        t0 = time.perf_counter()
        inline = self.runs_inline(req)
        if inline:
            sig, feeds, outputs = self._decode(model, req.body)
        else:
            ctx.contended = self.admission.running > 1
            sig, feeds, outputs = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._decode, model, req.body)
        t1 = time.perf_counter()
        result, waited = await self.abatcher.run(model.run, sig, feeds, outputs,
                                                 deadline=ctx.deadline, gone=watch)
        t2 = time.perf_counter()
        timing = {"decode": t1 - t0, "batch": waited, "model": t2 - t1 - waited}
        if inline:
            return self._respond(req, result, ctx, timing, t0, own=t2 - t1)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: self._respond(req, result, ctx, timing, t0, own=t2 - t1))

    # routing ---------------------------------------------------------------------------------

    def _route(self, req: Request) -> Union[Response, Job]:
        path = req.path.rstrip("/") or "/"
        handler = self._exact.get(path)
        if handler is not None:
            return handler(req)
        if path.startswith(GATEWAY_PREFIX) and path.count("/") == 3:
            return self._gateway_route(req, path[len(GATEWAY_PREFIX):])
        raise NotFound(f"no route {req.path}; expected POST / or POST {GATEWAY_PREFIX}<service>, "
                       "GET /healthz")

    def _gateway_route(self, req: Request, name: Optional[str] = None) -> Union[Response, Job]:
        if req.method not in ("GET", "POST", "HEAD"):
            raise MethodNotAllowed(f"{req.method} {req.path}; expected POST (or GET for the schema)",
                                   headers={"Allow": "GET, POST"})
        self._check_size(req)
        configured = self.config.service_name
        resource = GATEWAY_PREFIX + (configured if name is None else name)
        check_auth(self.config.service_token, req, resource,
                   max_skew=self.config.signature_max_skew)
        if name is not None and configured and name != configured:
            # after auth: only a caller with the token learns the real name
            raise NotFound(f"service '{name}' not found; this function serves '{configured}' at "
                           f"{GATEWAY_PREFIX}{configured}")
        if req.method in ("GET", "HEAD") or not req.body:
            sig_name = req.query.get("signature_name", "")
            return Job(lambda model, ctx: self.schema(model, sig_name), admitted=False)
        return Job(lambda model, ctx: self.predict(req, model, ctx), admitted=True)

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

    def schema(self, model: Servable, signature_name: str = "") -> Response:
        sig = model.signature(signature_name)
        return Response(200, codec.signature_json_bytes(sig), {"Content-Type": "application/json"})

    def _decode(self, model: Servable, body: bytes) -> Tuple[Signature, Dict[str, Any], List[str]]:
        if _looks_like_json(body):
            raise BadRequest(
                "JSON bodies are not accepted; expected a serialized PredictRequest protobuf "
                "(proto/predict.proto, Content-Type application/octet-stream), e.g. from the "
                "EAS SDK's TFRequest.to_string()"
            )
        wire = codec.decode_request(body)
        sig = model.signature(wire.signature_name)
        return sig, codec.feeds_for_signature(wire, sig), codec.output_names(wire, sig)

    def run_predict(self, model: Servable, body: bytes, ctx: Optional[Context] = None,
                    timing: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
        """Decode, validate, run (batched with other requests when batching is on): the one
        path traffic and warm-up share.  ``timing`` gets decode, batch-wait and model seconds."""
        t0 = time.perf_counter()
        sig, feeds, outputs = self._decode(model, body)
        t1 = time.perf_counter()
        batched = 0.0
        if self.batcher is None:
            result = model.run(sig, feeds, outputs)
            self.metrics.runtime(1, time.perf_counter() - t1)
        else:
            ctx = ctx or Context()
            result, batched = self.batcher.run(model.run, sig, feeds, outputs,
                                               deadline=ctx.deadline)
        if timing is not None:
            timing.update(decode=t1 - t0, batch=batched, model=time.perf_counter() - t1 - batched)
        return result

    def predict(self, req: Request, model: Servable, ctx: Context) -> Response:
        t0 = time.perf_counter()
        timing: Dict[str, float] = {}
        outputs = self.run_predict(model, req.body, ctx, timing)
        return self._respond(req, outputs, ctx, timing, t0)

    def _respond(self, req: Request, outputs: Dict[str, Any], ctx: Context,
                 timing: Dict[str, float], t0: float, own: float = 0.0) -> Response:
        """Encode the reply; ``own``: seconds of this request's run that were not its own
        work on the loop (a batch's model call), left out of the inline estimate."""
        t1 = time.perf_counter()
        resp = Response(200, codec.encode_response(outputs), {"Content-Type": PROTOBUF})
        t2 = time.perf_counter()
        queued = ctx.queued + timing["batch"]
        self.metrics.queued(queued)
        if self.config.server_timing:
            resp.headers["Server-Timing"] = (
                f"queue;dur={queued * 1e3:.3f}, decode;dur={timing['decode'] * 1e3:.3f}, "
                f"model;dur={timing['model'] * 1e3:.3f}, encode;dur={(t2 - t1) * 1e3:.3f}")
        # what inlining decides by: this request's own work, not its waits
        self._observe(t2 - t0 - timing["batch"] - own, len(req.body), ctx.contended)
        if not self._first_request_logged:
            self._first_request_logged = True
            w = self.warmup
            log.info("first request: %.1f ms (%s)", (time.perf_counter() - t0) * 1e3,
                     f"after warm-up of {w['replayed']} replays" if w.get("replayed")
                     else "no warm-up")
        return resp

    def _metrics_route(self, req: Request) -> Response:
        _health_method(req)
        if self.config.service_token:
            check_auth(self.config.service_token, req, "/metrics")
        return Response(200, self.metrics.render(), {"Content-Type": CONTENT_TYPE})

    def _live_route(self, req: Request) -> Response:
        _health_method(req)
        return json_response(200, {"status": "alive", "pid": os.getpid()})

    def _health_route(self, req: Request) -> Response:
        _health_method(req)
        detailed = True
        if self.config.service_token:
            try:
                check_auth(self.config.service_token, req, "/healthz")
            except Unauthorized:
                detailed = False  # pid, paths and errors are for the token holder only
        return self.health(detailed=detailed)

    def health(self, *, detailed: bool = True) -> Response:
        """Readiness, answered at once in every state: 200 once loaded and warmed up."""
        h = self.holder
        h.start()  # a readiness probe is what first starts the load on an idle instance
        info: Dict[str, Any] = {"status": h.state}
        if detailed:
            info["pid"] = os.getpid()
            if h.model is not None:
                info.update(signatures=sorted(h.model.signatures),
                            default_signature=h.model.default_signature,
                            tensorflow=h.model.tf_version)
            if h.error:
                info["error"] = h.error
            if self.warmup:
                info["warm_up"] = self.warmup
            adm = self.admission
            info["queue"] = {"running": adm.running, "waiting": adm.waiting,
                             "shed": {str(k): v for k, v in adm.shed.items()}}
        ready = h.model is not None
        return json_response(200 if ready else 503, info, None if ready else {"Retry-After": "1"})


def _health_method(req: Request) -> None:
    if req.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{req.method} {req.path}; expected GET", headers={"Allow": "GET, HEAD"})


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # a predict that finished after its 408 was sent: nobody awaits it; keep asyncio quiet
    if not fut.cancelled():
        fut.exception()


def _looks_like_json(body: bytes) -> bool:
    # '{' and '[' would open protobuf groups (fields 15 and 11), which PredictRequest never
    # has, so such a body is not protobuf and is most likely JSON.
    return body[:64].lstrip()[:1] in (b"{", b"[")


__all__ = ["INLINE_SECONDS", "Job", "Service"]
