"""The gRPC front door: a call (its method's path, metadata and message bytes) -> ``Request``;
the ``Response`` -> the reply message, or a status with the same one line HTTP gives.

grpcio is handed raw bytes both ways (no protobuf runtime here: the routes decode with the
project's own wire code).  One generic handler serves every method the service routes
(TF Serving's PredictionService and ModelService, V2's GRPCInferenceService,
grpc.health.v1); any other is gRPC's own ``UNIMPLEMENTED``.  A call goes through what an HTTP
request does: routed and authorised on its metadata (``authorization``) first, its bytes
counted in flight, the admission queue, batching, ``RPC_KEEPALIVE`` or the client's own
deadline, whichever is sooner; a client that cancels while queued never reaches the model.

grpcio is imported only by ``start``, in a worker, after the fork (gRPC's threads do not
survive one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Iterable, Optional, Tuple

from ..errors import ClientGone, TFServerlessError
from ..messages import Request, Response
from ..serving.service import Service
from . import admit_head

log = logging.getLogger("tfserverless")

#: our replies' HTTP status -> the gRPC status code (by name), as TF Serving and Triton use
#: them.  A rate limit (429) is RESOURCE_EXHAUSTED like a full queue (450): the caller is
#: over a quota and should slow down; UNAVAILABLE would invite gRPC's transparent retries at
#: once.  Not loaded yet (503) is UNAVAILABLE: retrying is right.
STATUS: Dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ALREADY_EXISTS",
    413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
    431: "RESOURCE_EXHAUSTED", 450: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
}
#: HTTP/2 streams one connection may have open at once (each costs little until its message
#: arrives; what runs or waits is the admission queue's to bound).  A client that opens more
#: before it has read the server's SETTINGS gets REFUSED_STREAM (UNAVAILABLE) for the excess
MAX_STREAMS = 256
#: a connection is asked to close (GOAWAY, then this long to finish its calls) after this
#: long: a stream opened and never finished cannot hold its buffers for good
MAX_CONNECTION_AGE_MS = 10 * 60 * 1000


def status_name(status: int) -> str:
    """The gRPC status code a reply's HTTP status maps to (by name)."""
    return STATUS.get(status, "INTERNAL")


def message(resp: Response) -> str:
    """A refusal's one line (our error replies are one line of text)."""
    return resp.body.decode("utf-8", "replace").strip()


def peer_address(peer: str) -> str:
    """A gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``) as the address bytes in
    flight are bounded by; '' for a unix socket or an unknown form."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def metadata_headers(metadata: Optional[Iterable[Tuple[str, Any]]]) -> Dict[str, str]:
    """Text metadata as request headers (binary ``-bin`` values are not headers)."""
    return {k: v for k, v in (metadata or ()) if isinstance(v, str) and not k.endswith("-bin")}


async def answer(service: Service, method: str, body: bytes, headers: Dict[str, str],
                 timeout: Optional[float], peer: str, gone: asyncio.Future[None]) -> Response:
    """The reply to one call, as HTTP's ``asgi.answer`` gives one: routed and authorised on
    its metadata, its message counted in flight, then served (``gone``: the call ended)."""
    req = Request("POST", method, headers, body, content_length=len(body))
    req.timeout = timeout
    admitted = admit_head(service, req, peer)
    if isinstance(admitted, Response):
        return admitted
    routed, held = admitted
    admission = service.admission
    try:
        admission.reserve_bytes(held, len(body))
        return await service.handle_async(req, lambda: gone, routed, held)
    except ClientGone as e:  # left while queued: counted; nobody reads the status
        return Response(e.status, e.message.encode())
    except TFServerlessError as e:  # 450: bytes in flight
        return service.route_error(req, e)
    finally:
        admission.release_bytes(held)


def options(service: Service) -> Tuple[Tuple[str, int], ...]:
    cfg = service.config
    return (
        # what grpcio will take of one message: MAX_BODY_BYTES (more: RESOURCE_EXHAUSTED, by
        # gRPC itself, before the message is held)
        ("grpc.max_receive_message_length", cfg.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_concurrent_streams", MAX_STREAMS),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", max(1000, cfg.rpc_keepalive_ms)),
        ("grpc.so_reuseport", 1),  # every worker listens on the port; the kernel spreads calls
    )


async def start(service: Service, host: str, port: int) -> Any:
    """Listen for gRPC on ``host:port`` in this worker's event loop; the started server."""
    import grpc  # here, after the fork: see the module's docstring

    async def call(method: str, body: bytes, context: Any) -> bytes:
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def ended(_: Any) -> None:
            if not gone.done():
                gone.set_result(None)

        context.add_done_callback(ended)
        task = asyncio.ensure_future(answer(
            service, method, body, metadata_headers(context.invocation_metadata()),
            context.time_remaining(), peer_address(context.peer()), gone))
        try:  # shielded: a cancelled call leaves the queue through ``gone``, as HTTP's does
            resp = await asyncio.shield(task)
        except asyncio.CancelledError:
            ended(None)
            raise
        if resp.status == 200:
            return resp.body
        retry = resp.headers.get("Retry-After")
        if retry:
            context.set_trailing_metadata((("retry-after", retry),))
        await context.abort(getattr(grpc.StatusCode, status_name(resp.status)), message(resp))
        raise AssertionError("abort returns by raising")

    def behaviour(method: str) -> Any:
        async def one(body: bytes, context: Any) -> bytes:
            return await call(method, body, context)
        return grpc.unary_unary_rpc_method_handler(one)

    handlers = {m: behaviour(m) for m in service.grpc_methods()}

    class Handler:  # grpc asks only for .service (duck-typed; its base class is untyped)
        def service(self, details: Any) -> Any:
            return handlers.get(details.method)  # None: gRPC answers UNIMPLEMENTED

    server = grpc.aio.server(options=options(service))
    server.add_generic_rpc_handlers((Handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"gRPC could not listen on {host}:{port} (GRPC_PORT)")
    await server.start()
    log.debug("gRPC listening on %s:%d", host, bound)  # the startup line says where
    return server


__all__ = ["MAX_CONNECTION_AGE_MS", "MAX_STREAMS", "STATUS", "answer", "message",
           "metadata_headers", "options", "peer_address", "start", "status_name"]
