"""The service token: raw, or the EAS SDK's signed ``Authorization`` (HMAC-SHA1 over five
lines), with an opt-in freshness check on the signed ``Date``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime
from typing import Optional

from ..errors import Unauthorized
from ..messages import Request


def _b(text: str) -> bytes:
    # headers may carry any code point (latin-1 from servers, lone surrogates from JSON
    # events): never a reason for a 500
    return text.encode("utf-8", "surrogatepass")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(_b(a), _b(b))


def eas_signature(token: str, *, method: str, content_md5: str, content_type: str,
                  date: str, resource: str) -> str:
    """The ``EAS <sig>`` value the official SDK sends (HMAC-SHA1 over five lines)."""
    msg = f"{method}\n{content_md5}\n{content_type}\n{date}\n{resource}".strip()
    digest = hmac.new(_b(token), _b(msg), hashlib.sha1).digest()
    return "EAS " + base64.b64encode(digest).decode()


def check_auth(token: str, req: Request, resource: str, *, max_skew: float = 0.0,
               now: Optional[float] = None, body: bool = True) -> None:
    """Accept the raw token or the SDK's signed form; compare in constant time.  With
    ``max_skew`` a signature's ``Date`` must be within that many seconds of ours.  With
    ``body=False`` only the headers are checked (before the body is read: a client without
    the token never gets that far); ``check_content_md5`` does the rest once it is."""
    if not token:
        return
    got = req.headers.get("authorization", "").strip()
    if not got:
        raise Unauthorized(
            "missing Authorization header; expected the service token or the EAS SDK's signature"
        )
    if _same(got, token):
        return
    if got.startswith("EAS "):
        md5 = req.headers.get("content-md5", "")
        if body:
            check_content_md5(token, req)
        date = req.headers.get("date", "")
        want = eas_signature(token, method=req.method, content_md5=md5,
                             content_type=req.headers.get("content-type", ""), date=date,
                             resource=resource)
        if not _same(got, want):
            raise Unauthorized(
                f"EAS signature does not match; expected HMAC-SHA1 of method, Content-MD5, "
                f"Content-Type, Date and {resource} with the service token"
            )
        if max_skew > 0:
            check_fresh(date, max_skew, time.time() if now is None else now)
        return
    raise Unauthorized("Authorization does not match the service token")


def check_content_md5(token: str, req: Request) -> None:
    """A signed request's ``Content-MD5`` (which the signature covers) against its body."""
    got = req.headers.get("authorization", "").strip()
    if not token or not got.startswith("EAS ") or _same(got, token):
        return
    md5 = req.headers.get("content-md5", "")
    if md5 and not _same(md5.lower(), hashlib.md5(req.body).hexdigest()):  # hex: any case
        raise Unauthorized("Content-MD5 does not match the body; expected the body's hex MD5")


def check_fresh(date: str, max_skew: float, now: float) -> None:
    """``SIGNATURE_MAX_SKEW``: a signed request's ``Date`` within ``max_skew`` seconds."""
    try:
        stamp = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        raise Unauthorized(f"Date header {date[:40]!r} is not an HTTP date; a signed request "
                           f"needs one within {max_skew:g}s (SIGNATURE_MAX_SKEW)") from None
    skew = now - stamp
    if abs(skew) > max_skew:
        raise Unauthorized(f"signed Date is {abs(skew):.0f}s {'old' if skew > 0 else 'ahead'}; "
                           f"expected within {max_skew:g}s of server time (SIGNATURE_MAX_SKEW)")
