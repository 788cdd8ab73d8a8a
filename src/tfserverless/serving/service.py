"""Transport-agnostic routing: ``Request -> Response`` (schema, predict, health).

Platform adapters build a ``Request`` from their event and call ``Service.handle`` (sync
servers, Lambda, FC) or ``await Service.handle_async`` (ASGI); routing, auth, limits,
admission and errors -> status happen here, once.  Health and errors are answered at once;
predictions go through the admission queue, and only admitted ones reach the model (through
``predictor.Predictor``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ..backends.holder import ModelHolder, Servable
from ..config import Config
from ..errors import (
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TFServerlessError,
    Unauthorized,
)
from ..messages import (
    GATEWAY_PREFIX,
    Request,
    Response,
    check_coding,
    check_size,
    decoded_body,
    error_response,
    inflates_to_nothing,
    is_encoded,
    json_response,
)
from ..protocol.base import Call
from ..protocol.eas import EAS
from ..protocol.signature import signature_json_bytes
from .admission import Admission, Held, Watch, limits_for
from .auth import check_auth, check_content_md5
from .metrics import CONTENT_TYPE, Metrics
from .predictor import INLINE_SECONDS, Context, Predictor
from .routes import JSON_WEIGHT, Job, ProtocolRoutes, Routed, split_prefix

log = logging.getLogger("tfserverless")
EAS_CALL = Call()

#: requests /metrics does not count (probes and scrapes)
UNCOUNTED = frozenset(("/healthz", "/healthz/live", "/metrics"))


class Service:
    def __init__(self, config: Config, holder: ModelHolder,
                 admission: Optional[Admission] = None, metrics: Optional[Metrics] = None) -> None:
        self.config = config
        self.holder = holder
        self.admission = admission or Admission(limits_for(config))
        self.metrics = metrics or Metrics()
        self.warmup: Dict[str, Any] = {}  # what warm-up did (readiness shows it)
        self.predictor = Predictor(config, self.admission, self.metrics, self.warmup)
        self.eas = EAS()
        self.routes = ProtocolRoutes(self)
        self._exact: Dict[str, Callable[[Request], Routed]] = {
            "/healthz": self._health_route,
            "/healthz/live": self._live_route,
            "/metrics": self._metrics_route,
            "/": self._gateway_route,
        }
        # then by prefix, in order: EAS's gateway path, TF Serving REST, the V2 protocol
        self._prefixed: Tuple[Tuple[str, Callable[[Request, str], Routed]], ...] = (
            (GATEWAY_PREFIX, self._gateway_prefixed),
            ("/v1/models/", self.routes.tfserving_route),
            ("/v2", self.routes.v2_route),
        )

    # entry points ----------------------------------------------------------------------------

    def route(self, req: Request) -> Routed:
        """Route a request on its method, path and headers alone, before its body is read:
        sizes it declares, the token (a signature's Content-MD5 waits for the body) and names
        are checked here, so a client without the token never gets its body read or counted."""
        path = req.path.rstrip("/") or "/"
        handler = self._exact.get(path)
        if handler is not None:
            return handler(req)
        route = split_prefix(path, self._prefixed)
        if route is not None:
            return route(req, path)  # type: ignore[no-any-return]
        raise NotFound(f"no route {req.path}; expected POST / or POST {GATEWAY_PREFIX}<service> "
                       "(EAS), /v1/models/<name>:predict (TF Serving REST), "
                       "/v2/models/<name>/infer (V2), GET /healthz")

    def _with_body(self, req: Request, target: Routed) -> Union[Response, Job]:
        """What ``route`` decided, now that the body is read."""
        if isinstance(target, Response):
            return target
        check_size(req, self.config.max_body_bytes, "MAX_BODY_BYTES")  # as read, if undeclared
        check_content_md5(self.config.service_token, req)
        return target if isinstance(target, Job) else target(req)

    def handle(self, req: Request, routed: Optional[Routed] = None,
               held: Optional[Held] = None) -> Response:
        """Sync servers: queued requests wait in their own thread.  ``routed``: what
        ``route`` said of this request before its body was read; ``held``: the bytes in
        flight its adapter counted for it (released by the adapter)."""
        t0 = time.perf_counter()
        own = held is None
        held = held or self.admission.held()
        try:
            target = self._with_body(req, self.route(req) if routed is None else routed)
            if isinstance(target, Job):
                target = self._run_sync(req, target, held)
            resp = self._capped(req, target)
        except TFServerlessError as e:
            resp = self._error(req, e)
        except Exception as e:  # our bug, not the client's: log it, answer one line
            resp = self._bug(req, e)
        finally:
            if own:
                self.admission.release_bytes(held)
        self.count(req, resp.status, t0)
        return resp

    async def handle_async(self, req: Request, watch: Optional[Watch] = None,
                           routed: Optional[Routed] = None, held: Optional[Held] = None,
                           ) -> Response:
        """ASGI servers: queued requests and loads are awaited, holding no thread; ``watch()``
        gives a future that completes when the client disconnects, asked for only if the
        request must queue (then ``ClientGone`` is raised: nobody to answer)."""
        t0 = time.perf_counter()
        own = held is None
        held = held or self.admission.held()
        try:
            target = self._with_body(req, self.route(req) if routed is None else routed)
            if isinstance(target, Job):
                target = await self._run_async(req, target, watch, held)
            resp = self._capped(req, target)
        except ClientGone:
            self.count(req, ClientGone.status, t0)
            raise
        except TFServerlessError as e:
            resp = self._error(req, e)
        except Exception as e:
            resp = self._bug(req, e)
        finally:
            if own:
                self.admission.release_bytes(held)
        self.count(req, resp.status, t0)
        return resp

    def route_error(self, req: Request, e: TFServerlessError) -> Response:
        """The reply to a request refused before its body was read (counted in /metrics)."""
        resp = self._error(req, e)
        self.count(req, resp.status, time.perf_counter())
        return resp

    def count(self, req: Request, status: int, t0: float) -> None:
        """Record a request in /metrics (adapters call it for what they answer themselves)."""
        if req.path in UNCOUNTED:
            return
        m, adm = self.metrics, self.admission
        m.request(req.protocol or "none", status, time.perf_counter() - t0)
        m.gauges(adm.running, adm.waiting + self.predictor.waiting, adm.shed)

    def _error(self, req: Request, e: TFServerlessError) -> Response:
        if e.status >= 500 and e.status != 503:
            log.warning("%s %s -> %d: %s", req.method, req.path, e.status, e.message)
        return error_response(e, req.protocol)

    def _bug(self, req: Request, e: Exception) -> Response:
        log.exception("unexpected error on %s %s", req.method, req.path)
        return error_response(TFServerlessError(f"internal error: {type(e).__name__}"),
                              req.protocol)

    def _capped(self, req: Request, resp: Response) -> Response:
        cap = req.payload_limit
        if cap is not None and len(resp.body) > cap.nbytes:
            raise PayloadTooLarge(
                f"response of {len(resp.body)} bytes is over {cap.name}'s limit of "
                f"{cap.nbytes} bytes; ask for fewer outputs (output_filter) or a smaller batch")
        return resp

    def _load_wait(self, deadline: float) -> float:
        return max(0.0, min(self.config.load_timeout, deadline - time.monotonic()))

    def _prepare(self, req: Request, job: Job, held: Held) -> None:
        """Within the admitted slot: the body inflated and checked (``job.prepare``), and
        what that adds to the bytes in flight counted: the inflated size, and JSON at what
        parsing it takes (``JSON_WEIGHT``); 450 beyond ``MAX_INFLIGHT_BYTES``."""
        if job.prepare is None:
            return
        raw = len(req.body)
        json_bytes = job.prepare(req)
        extra = max(0, len(req.body) - raw) + json_bytes * (JSON_WEIGHT - 1)
        if extra:
            self.admission.reserve_bytes(held, extra)

    def _run_sync(self, req: Request, job: Job, held: Held) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline())
        deadline = ctx.deadline
        if not job.admitted:
            return job.run(self.holder.get(wait=self._load_wait(deadline)), ctx)
        if job.check is not None:
            job.check(self.holder.get(wait=self._load_wait(deadline)))
        t0 = time.perf_counter()
        adm.acquire(deadline, held.peer)
        try:
            self._prepare(req, job, held)
            model = self.holder.get(wait=self._load_wait(deadline))
            adm.check_deadline(deadline)
            ctx.queued = time.perf_counter() - t0
            resp = job.run(model, ctx)
        finally:
            adm.release(held.peer)
        # a sync server cannot answer while the model runs; past RPC_KEEPALIVE the answer is
        # the 408 an ASGI server would have sent at the deadline
        adm.check_deadline(deadline)
        return resp

    async def _run_async(self, req: Request, job: Job, watch: Optional[Watch],
                         held: Held) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline())
        deadline = ctx.deadline
        t0 = time.perf_counter()
        if self.holder.model is None:
            await self.holder.wait_async(self._load_wait(deadline))
        model = self.holder.ready()
        if not job.admitted:
            return job.run(model, ctx)
        if job.check is not None:
            job.check(model)
        await adm.acquire_async(deadline, watch, held.peer)
        pred = self.predictor
        try:
            if job.prepare is not None and is_encoded(req):
                # inflating costs time: in a thread (zlib lets the event loop run meanwhile)
                await asyncio.get_running_loop().run_in_executor(
                    pred.executor, self._prepare, req, job, held)
            else:
                self._prepare(req, job, held)
        except BaseException:
            adm.release(held.peer)
            raise
        ctx.queued = time.perf_counter() - t0
        if pred.abatcher is not None:
            try:
                codec = job.codec or self.eas
                return await pred.predict_batched(req, model, ctx, watch, codec, job.call)
            finally:
                adm.release(held.peer)
        handed_off = False
        try:
            if pred.runs_inline(req):
                return job.run(model, ctx)  # cheaper than the hand-off to a thread would be
            ctx.contended = adm.running > 1
            work = pred.executor.submit(job.run, model, ctx)
            waiter = asyncio.wrap_future(work)
            waiter.add_done_callback(_retrieve)
            remaining = deadline - time.monotonic()
            done, _ = await asyncio.wait({waiter}, timeout=None if remaining == float("inf")
                                         else max(0.0, remaining))
            if done:
                return work.result()
            handed_off = True  # the model call cannot be stopped: its slot frees when it ends
            work.add_done_callback(lambda _: adm.release(held.peer))
            raise adm.timeout_error()
        finally:
            if not handed_off:
                adm.release(held.peer)

    # routing ---------------------------------------------------------------------------------

    def _gateway_prefixed(self, req: Request, path: str) -> Routed:
        if path.count("/") != 3:
            raise NotFound(f"no route {req.path}; expected {GATEWAY_PREFIX}<service>")
        return self._gateway_route(req, path[len(GATEWAY_PREFIX):])

    def _gateway_route(self, req: Request, name: Optional[str] = None) -> Routed:
        req.protocol = self.eas.name
        if req.method not in ("GET", "POST", "HEAD"):
            raise MethodNotAllowed(f"{req.method} {req.path}; expected POST (or GET for the schema)",
                                   headers={"Allow": "GET, POST"})
        configured = self.config.service_name
        resource = GATEWAY_PREFIX + (configured if name is None else name)
        check_auth(self.config.service_token, req, resource,
                   max_skew=self.config.signature_max_skew, body=False)
        if name is not None and configured and name != configured:
            # after auth: only a caller with the token learns the real name (or the limits)
            raise NotFound(f"service '{name}' not found; this function serves '{configured}' at "
                           f"{GATEWAY_PREFIX}{configured}")
        check_size(req, self.config.max_body_bytes, "MAX_BODY_BYTES")
        check_coding(req)
        return self._gateway_job

    def _gateway_job(self, req: Request) -> Job:
        if req.method in ("GET", "HEAD") or not req.body or inflates_to_nothing(req):
            sig_name = req.query.get("signature_name", "")
            return Job(lambda model, ctx: self.schema(model, sig_name), admitted=False)
        limit = self.config.max_body_bytes

        def prepare(req: Request) -> int:
            req.body = decoded_body(req, limit, "MAX_BODY_BYTES")  # as on /v1 and /v2
            return 0

        return Job(lambda model, ctx: self.predictor.predict(req, model, ctx, self.eas, EAS_CALL),
                   admitted=True, codec=self.eas, prepare=prepare)

    # endpoints -------------------------------------------------------------------------------

    def schema(self, model: Servable, signature_name: str = "") -> Response:
        sig = model.signature(signature_name)
        return Response(200, signature_json_bytes(sig), {"Content-Type": "application/json"})

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
                            default_signature=h.model.default_signature, runtime=h.model.runtime)
                if h.model.tf_version:
                    info["tensorflow"] = h.model.tf_version
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


__all__ = ["INLINE_SECONDS", "Context", "Job", "Service"]
