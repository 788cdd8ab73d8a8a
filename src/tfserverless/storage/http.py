"""http(s):// objects (archives), with the standard library only."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from typing import IO, Any

from ..config import Config
from .base import ObjectInfo, Source, unavailable

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
        except (http.client.IncompleteRead, ConnectionError, socket.timeout) as e:
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

    def _request(self, method: str) -> Any:
        req = urllib.request.Request(self.url, method=method,
                                     headers={"User-Agent": "tfserverless"})
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            e.close()
            if method == "HEAD" and e.code in (403, 405, 501):
                return None  # some servers (and presigned GET URLs) refuse HEAD
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
        return ObjectInfo("object", version, size)

    def open(self, relative: str = "") -> IO[bytes]:
        return _Counted(self._request("GET"), self.url)  # type: ignore[return-value]


def open_source(url: str, config: Config) -> Source:
    return HttpSource(url, config)
