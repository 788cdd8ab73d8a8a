"""http(s):// objects (archives), with the standard library only."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from ..config import Config
from .base import ObjectInfo, RangeIgnored, Source, Stream, changed, unavailable

TIMEOUT = 30.0


class _Counted:
    """A response stream that fails loudly when it ends before Content-Length."""

    def __init__(self, resp: Any, url: str) -> None:
        self._resp = resp
        self._url = url
        length = resp.headers.get("Content-Length")
        self._expected = int(length) if length and length.isdigit() else -1
        self._got = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = bytes(self._resp.read(n))
        except (http.client.IncompleteRead, OSError) as e:  # resets, timeouts, TLS errors
            raise unavailable(self._url, f"download interrupted after {self._got} bytes "
                                         f"({type(e).__name__})") from None
        self._got += len(data)
        if not data and 0 <= self._expected != self._got:
            raise unavailable(self._url, f"download truncated: {self._got} of "
                                         f"{self._expected} bytes")
        return data

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class HttpSource(Source):
    def __init__(self, url: str, config: Config) -> None:
        self.url = url
        self._ranges = False
        self._pin: Dict[str, str] = {}  # If-Match or If-Unmodified-Since for ranged reads

    def _request(self, method: str, headers: Optional[Dict[str, str]] = None) -> Any:
        req = urllib.request.Request(self.url, method=method,
                                     headers={"User-Agent": "tfserverless", **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            e.close()
            if method == "HEAD" and e.code in (403, 405, 501):
                return None  # some servers (and presigned GET URLs) refuse HEAD
            if e.code == 412 and headers:
                raise changed(self.url) from None
            raise unavailable(self.url, f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise unavailable(self.url, f"server unreachable ({reason})") from None

    def stat(self) -> ObjectInfo:
        resp = self._request("HEAD") or self._request("GET")
        with resp:
            h = resp.headers
            version = h.get("ETag") or h.get("Last-Modified") or ""
            length = h.get("Content-Length")
            size = int(length) if length and length.isdigit() else 0
            if not version:
                version = f"size-{size}"
            # ranged reads only where the server says it serves them, pinned to this version
            # (a strong ETag; else Last-Modified)
            etag, modified = h.get("ETag") or "", h.get("Last-Modified") or ""
            self._pin = {"If-Match": etag} if etag and not etag.startswith("W/") else \
                {"If-Unmodified-Since": modified} if modified else {}
            self._ranges = h.get("Accept-Ranges", "").strip().lower() == "bytes" \
                and bool(self._pin) and size > 0
        return ObjectInfo("object", version, size)

    def open(self, relative: str = "") -> Stream:
        return _Counted(self._request("GET"), self.url)

    def supports_ranges(self) -> bool:
        return self._ranges

    def read_range(self, relative: str, start: int, end: int) -> Stream:
        resp = self._request("GET", {"Range": f"bytes={start}-{end - 1}", **self._pin})
        got = resp.headers.get("Content-Range", "")
        if resp.status != 206 or not got.startswith(f"bytes {start}-"):
            resp.close()
            raise RangeIgnored(self.url)
        return _Counted(resp, self.url)


def open_source(url: str, config: Config) -> Source:
    return HttpSource(url, config)
