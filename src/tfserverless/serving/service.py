"""Transport-agnostic routing: ``Request -> Response`` (schema, predict, health).

Platform adapters build a ``Request`` from their event and call ``Service.handle`` (sync
servers, Lambda, FC) or ``await Service.handle_async`` (ASGI); routing, auth, limits,
admission and errors -> status happen here, once.  Health and errors are answered at once;
predictions go through the admission queue, and only admitted ones reach the model (through
``predictor.Predictor``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from ..backends.holder import ModelHolder
from ..config import Config
from ..errors import ClientGone, NotFound, PayloadTooLarge, TFServerlessError, Unauthorized
from ..messages import GATEWAY_PREFIX, Request, Response, check_size, error_response, json_response
from ..protocol import grpc_health
from ..protocol.text import clip
from .admission import Admission, Held, Watch, limits_for
from .auth import check_auth, check_content_md5
from .jobs import Runner
from .metrics import CONTENT_TYPE, Metrics
from .predictor import Predictor
from .routes.common import Job, Route, Routed, allow, ready_reply, split_prefix
from .routes.eas import EASRoutes
from .routes.sagemaker import INVOCATIONS, PING, RUNTIME_PREFIX, SageMakerRoutes
from .routes.tfserving import PREFIX as TFS_PREFIX
from .routes.tfserving import TFServingRoutes
from .routes.tfserving_grpc import TFServingGrpcRoutes
from .routes.v2 import PREFIX as V2_PREFIX
from .routes.v2 import V2Routes
from .routes.v2_grpc import V2GrpcRoutes

log = logging.getLogger("tfserverless")

#: the standard gRPC health check (Kubernetes' gRPC probes)
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
#: TF Serving's REST API: a path under it that no route takes still gets TF Serving's JSON error
TFS_API = "/v1/"
#: TF Serving's Prometheus path (its monitoring config's default): what /metrics answers
TFS_METRICS = "/monitoring/prometheus/metrics"
#: requests /metrics does not count (probes and scrapes)
UNCOUNTED = frozenset(("/healthz", "/healthz/live", "/metrics", TFS_METRICS, HEALTH_CHECK, PING))
#: warm-up requests an adapter sends through its whole path (the first that succeeded)
PATH_WARMUP_REQUESTS = 16


class _Answering:
    """What both entries do around a request (a context manager): its bytes in flight held
    (and given back, unless the adapter holds them), an error turned into its one-line reply
    (ours: a 500 naming the type, logged), the reply counted in /metrics.  ``gone_raises``: a
    client gone while queued has nobody to answer (ASGI).  A class, not a generator: it runs
    on every request, and contextlib's costs ~8 us more per request (measured)."""

    __slots__ = ("gone_raises", "held", "own", "req", "resp", "service", "t0")

    def __init__(self, service: Service, req: Request, held: Optional[Held],
                 gone_raises: bool) -> None:
        self.service, self.req, self.gone_raises = service, req, gone_raises
        self.own = held is None
        self.held = held or service.admission.held()
        self.resp: Optional[Response] = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> _Answering:
        return self

    def __exit__(self, kind: Any, e: Optional[BaseException], tb: Any) -> bool:
        svc, req = self.service, self.req
        if self.own:
            svc.admission.release_bytes(self.held)
        if e is None:
            pass
        elif isinstance(e, ClientGone) and self.gone_raises:
            svc.count(req, ClientGone.status, self.t0)
            return False
        elif isinstance(e, TFServerlessError):
            self.resp = svc.error(req, e)
        elif isinstance(e, Exception):  # our bug, not the client's: log it, answer one line
            self.resp = svc.bug(req, e)
        else:  # cancelled, interrupted: on its way out
            return False
        assert self.resp is not None
        svc.count(req, self.resp.status, self.t0)
        return True


class Service:
    def __init__(self, config: Config, holder: ModelHolder,
                 admission: Optional[Admission] = None, metrics: Optional[Metrics] = None) -> None:
        self.config = config
        self.holder = holder
        self.admission = admission or Admission(limits_for(config))
        self.metrics = metrics or Metrics()
        self.warmup: Dict[str, Any] = {}  # what warm-up did (readiness shows it)
        # warm-up requests that succeeded (EAS bodies), up to PATH_WARMUP_REQUESTS
        self.warmup_bodies: List[bytes] = []
        self.predictor = Predictor(config, self.admission, self.metrics, self.warmup)
        self.runner = Runner(config, holder, self.admission, self.predictor)
        deps = (config, holder, self.predictor)
        self.eas, self.tfserving, self.v2 = EASRoutes(*deps), TFServingRoutes(*deps), V2Routes(*deps)
        self.sagemaker = SageMakerRoutes(*deps)
        self._exact: Dict[str, Callable[[Request], Routed]] = {
            "/healthz": self._health_route,
            "/healthz/live": self._live_route,
            "/metrics": self._metrics_route,
            TFS_METRICS: self._metrics_route,
            "/": self.eas.gateway,
            PING: self.sagemaker.ping,  # SageMaker's container contract
            INVOCATIONS: self.sagemaker.invocations,
        }
        # the gRPC methods (the gRPC front door serves these paths and no others)
        self._grpc: Dict[str, Callable[[Request], Routed]] = {HEALTH_CHECK: self._grpc_health_route}
        self.tfs_grpc, self.v2_grpc = TFServingGrpcRoutes(*deps), V2GrpcRoutes(*deps)
        self._grpc.update(self.tfs_grpc.methods())
        self._grpc.update(self.v2_grpc.methods())
        self._exact.update(self._grpc)
        # then by prefix, in order: EAS's gateway path, TF Serving REST, the V2 protocol
        self._prefixed: Tuple[Tuple[str, Route], ...] = (
            (GATEWAY_PREFIX, self.eas.prefixed),
            (TFS_PREFIX, self.tfserving.route),
            (V2_PREFIX, self.v2.route),
            (RUNTIME_PREFIX, self.sagemaker.runtime),
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
            return route(req, path)
        if path.startswith(TFS_API):  # TF Serving's clients read its errors as JSON
            req.protocol = self.tfserving.codec.name
        raise NotFound(f"no route {clip(req.path)}; expected POST / or POST {GATEWAY_PREFIX}<service> "
                       "(EAS), /v1/models/<name>:predict (TF Serving REST), "
                       "/v2/models/<name>/infer (V2), POST /invocations (SageMaker), GET /healthz")

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
        with _Answering(self, req, held, False) as ans:
            target = self._with_body(req, self.route(req) if routed is None else routed)
            if isinstance(target, Job):
                target = self.runner.run_sync(req, target, ans.held)
            ans.resp = self._capped(req, target)
        assert ans.resp is not None
        return ans.resp

    async def handle_async(self, req: Request, watch: Optional[Watch] = None,
                           routed: Optional[Routed] = None, held: Optional[Held] = None,
                           ) -> Response:
        """ASGI servers: queued requests and loads are awaited, holding no thread; ``watch()``
        gives a future that completes when the client disconnects, asked for only if the
        request must queue (then ``ClientGone`` is raised: nobody to answer)."""
        with _Answering(self, req, held, True) as ans:
            target = self._with_body(req, self.route(req) if routed is None else routed)
            if isinstance(target, Job):
                target = await self.runner.run_async(req, target, watch, ans.held)
            ans.resp = self._capped(req, target)
        assert ans.resp is not None
        return ans.resp

    def warmup_requests(self, limit: int = PATH_WARMUP_REQUESTS) -> List[Request]:
        """The warm-up requests that succeeded on the model, as requests to send through an
        adapter's whole path once the model is loaded (the first client request then finds
        every part of it warm: threads, estimates, first-use costs): EAS requests to ``/``
        with the token, marked so /metrics does not count them."""
        token = self.config.service_token
        headers = {"Authorization": token} if token else {}
        return [Request("POST", "/", dict(headers, **{"Content-Length": str(len(body))}), body,
                        content_length=len(body), warmup=True)
                for body in self.warmup_bodies[:limit]]

    def grpc_methods(self) -> FrozenSet[str]:
        """The full method names (``/package.Service/Method``) the gRPC front door serves."""
        return frozenset(self._grpc)

    def route_error(self, req: Request, e: TFServerlessError) -> Response:
        """The reply to a request refused before its body was read (counted in /metrics)."""
        resp = self.error(req, e)
        self.count(req, resp.status, time.perf_counter())
        return resp

    def count(self, req: Request, status: int, t0: float) -> None:
        """Record a request in /metrics (adapters call it for what they answer themselves)."""
        if req.path in UNCOUNTED or req.warmup:
            return
        m, adm = self.metrics, self.admission
        m.request(req.protocol or "none", status, time.perf_counter() - t0, req.infer)
        m.gauges(adm.running, adm.waiting + self.predictor.waiting, adm.shed)

    def error(self, req: Request, e: TFServerlessError) -> Response:
        if e.status >= 500 and e.status != 503:
            log.warning("%s %s -> %d: %s", req.method, req.path, e.status, e.message)
        return error_response(e, req.protocol)

    def bug(self, req: Request, e: Exception) -> Response:
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

    # endpoints -------------------------------------------------------------------------------

    def _metrics_route(self, req: Request) -> Response:
        """``/metrics``, and TF Serving's path for the same: the token when one is set (a
        signed request signs the path it asked for)."""
        allow(req, "GET", "HEAD")
        if self.config.service_token:
            check_auth(self.config.service_token, req, req.path.rstrip("/"))
        return Response(200, self.metrics.render(), {"Content-Type": CONTENT_TYPE})

    def _live_route(self, req: Request) -> Response:
        allow(req, "GET", "HEAD")
        return json_response(200, {"status": "alive", "pid": os.getpid()})

    def _health_route(self, req: Request) -> Response:
        allow(req, "GET", "HEAD")
        detailed = True
        if self.config.service_token:
            try:
                check_auth(self.config.service_token, req, "/healthz")
            except Unauthorized:
                detailed = False  # pid, paths and errors are for the token holder only
        return self.health(detailed=detailed)

    def _grpc_health_route(self, req: Request) -> Response:
        """``grpc.health.v1.Health/Check``: SERVING once loaded and warmed up, else
        NOT_SERVING (a status, not an error, as the protocol says); unauthenticated, as
        ``/healthz`` is, and it says nothing else.  A service we do not serve is NOT_FOUND."""
        allow(req, "POST")
        req.protocol = "grpc"
        name = grpc_health.read_service(req.body)
        if name and "/" + name + "/" not in self._grpc_services():
            raise NotFound(f"health of service {name[:grpc_health.MAX_SERVICE_NAME]!r} is not "
                           "known; expected '' or one of the services this server answers")
        self.holder.start()  # a probe is what first starts the load on an idle instance
        status = grpc_health.SERVING if self.holder.serving else grpc_health.NOT_SERVING
        return Response(200, grpc_health.encode_status(status),
                        {"Content-Type": "application/grpc"})

    def _grpc_services(self) -> FrozenSet[str]:
        return frozenset(m[:m.rindex("/") + 1] for m in self._grpc)

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
        return ready_reply(h.serving, info)


__all__ = ["Service"]
