"""The standard gRPC health protocol's messages (``grpc.health.v1``): ``HealthCheckRequest``
{service = 1} in, ``HealthCheckResponse`` {status = 1} out.  Kubernetes' gRPC probes and
``grpc_health_probe`` call ``Check``."""

from __future__ import annotations

from typing import Dict

from .grpc_wire import reading
from .wire import iter_fields, varint_bytes

#: HealthCheckResponse.ServingStatus
UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3
MAX_SERVICE_NAME = 256  # longer names are no service of ours
HEALTH_REQUEST = "grpc.health.v1.HealthCheckRequest (health.proto)"


def read_service(body: bytes) -> str:
    """The service a ``HealthCheckRequest`` asks about ('' is the server as a whole); a
    malformed body is a 400 naming the message."""
    name = ""
    with reading(HEALTH_REQUEST):
        for f in iter_fields(body):
            if f.number == 1:  # a longer name is kept only long enough to be no service of ours
                name = bytes(f.data()[:MAX_SERVICE_NAME + 1]).decode("utf-8", "replace")
    return name


_ANSWERS: Dict[int, bytes] = {s: (varint_bytes(1 << 3) + varint_bytes(s) if s else b"")
                              for s in (UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN)}


def encode_status(status: int) -> bytes:
    """A ``HealthCheckResponse`` carrying ``status``."""
    return _ANSWERS[status]


__all__ = ["HEALTH_REQUEST", "MAX_SERVICE_NAME", "NOT_SERVING", "SERVICE_UNKNOWN", "SERVING", "UNKNOWN",
           "encode_status", "read_service"]
