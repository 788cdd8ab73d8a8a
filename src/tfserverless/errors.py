"""One base error carrying the HTTP status; every failure a client can see is one of these.

The service maps it to a reply in one place (``messages.error_response``).  Messages are one
line, say what was wrong and what was expected, and never carry secrets.
"""

from __future__ import annotations

from typing import Dict, Optional


class TFServerlessError(Exception):
    """Base error: ``status`` is the HTTP status the client gets, ``message`` one line."""

    status = 500

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        # Keep replies to one line whatever the cause's text looked like.
        message = " ".join(str(message).split())
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers: Dict[str, str] = dict(headers or {})


class BadRequest(TFServerlessError):
    status = 400


class Unauthorized(TFServerlessError):
    status = 401


class NotFound(TFServerlessError):
    status = 404


class MethodNotAllowed(TFServerlessError):
    status = 405


class PayloadTooLarge(TFServerlessError):
    status = 413


class NotImplementedHere(TFServerlessError):
    """A method of a protocol this server answers by design with no (gRPC: UNIMPLEMENTED)."""

    status = 501


class UnsupportedMediaType(TFServerlessError):
    status = 415


class RequestTimeout(TFServerlessError):
    """EAS's 408: the request's time (queue wait included) ran past ``RPC_KEEPALIVE``."""

    status = 408


class TooManyRequests(TFServerlessError):
    """EAS's 429: over ``RPC_RATE_LIMIT`` requests a second."""

    status = 429


class HeadersTooLarge(TFServerlessError):
    status = 431


class QueueFull(TFServerlessError):
    """EAS's 450: the instance's queue is full; the client should try another instance."""

    status = 450


class ClientGone(TFServerlessError):
    """The client disconnected: nothing is sent and nothing is logged (EAS logs a 499)."""

    status = 499


class ModelUnavailable(TFServerlessError):
    """The model cannot be served yet (loading, or its last load failed): retry later."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


class ModelError(TFServerlessError):
    """The model itself cannot do what was asked (not the client's input); not retried by SDKs."""

    status = 501


class ConfigError(TFServerlessError):
    """A setting is missing or malformed; raised at start, never at request time."""

    status = 500


def first_line(e: BaseException, *, named: bool = False) -> str:
    """An exception in one line for a reply or a log: ours by its message; another's by its
    ``message`` (TensorFlow's errors) or text, first line only, with its type when ``named``
    (or when it says nothing)."""
    if isinstance(e, TFServerlessError):
        return e.message
    text = str(getattr(e, "message", None) or e).strip()
    line = text.splitlines()[0] if text else ""
    if not line:
        return type(e).__name__
    return f"{type(e).__name__}: {line}" if named else line

