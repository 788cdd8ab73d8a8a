"""The one small interface every scheme implements, and helpers they share."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from .._compat import Protocol
from ..errors import ModelUnavailable

log = logging.getLogger("tfserverless.storage")

CHUNK = 1 << 20



class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class Stream(Readable, Protocol):
    """What storage reads an object through: an SDK's body, a file, a wrapper of either."""

    def close(self) -> None: ...

class ObjectChanged(ModelUnavailable):
    """The object was replaced while it was being read (its ETag or generation moved): the
    fetch is abandoned, nothing is cached, and the next load reads the new version whole."""


class RangeIgnored(Exception):
    """The store answered a range request with the whole object: read it as one stream."""


class ObjectInfo(NamedTuple):
    """What one ``stat`` learns: a single object or a prefix of many, and its version."""

    kind: str  # "object" or "prefix"
    version: str  # ETag / Last-Modified / mtime+size / a digest of a prefix listing
    size: int  # bytes of the object, or of all objects under the prefix
    entries: Tuple[Tuple[str, int], ...] = ()  # prefix: (relative key, size) of each object


class Source:
    """A model location.  ``stat`` once, then ``open`` the object or each prefix entry."""

    url: str

    def stat(self) -> ObjectInfo:
        raise NotImplementedError

    def open(self, relative: str = "") -> Stream:
        """A readable stream of the object (or of ``relative`` under a prefix)."""
        raise NotImplementedError

    def local_dir(self) -> Optional[str]:
        """A directory that can be served in place (local paths), else None."""
        return None

    def supports_ranges(self) -> bool:
        """Whether ``read_range`` may be used (after ``stat``): see ``ranges``."""
        return False

    def read_range(self, relative: str, start: int, end: int) -> Stream:
        """Bytes ``[start, end)`` of the object (``relative`` under a prefix), of the version
        ``stat`` saw; only where ``supports_ranges``."""
        raise NotImplementedError


class ObjectStore(Source):
    """``scheme://bucket/key``: the key names one object (an archive) or, when no object has
    that name, a prefix whose every object is the model.  The logic every object store shares
    ("head the object, else list the prefix", errors as one-line 503s) is here; each backend
    supplies only its SDK calls."""

    scheme = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bucket, _, self.key = url[len(self.scheme) + 3:].partition("/")
        if not self.bucket:
            raise unavailable(url, f"no bucket in the URL; expected {self.scheme}://bucket/key")
        self._prefix = ""
        self._versions: Dict[str, str] = {}  # relative key ("" for the object) -> version

    # the SDK calls ---------------------------------------------------------------------------

    def _head(self, key: str) -> Optional[Tuple[str, int]]:
        """(version, size) of the object ``key``; None when there is none."""
        raise NotImplementedError

    def _list(self, prefix: str) -> List[Tuple[str, int, str]]:
        """(key, size, version) of every object whose key starts with ``prefix``."""
        raise NotImplementedError

    def _get(self, key: str) -> Any:
        """The SDK's stream of the object (anything with ``read`` and ``close``)."""
        raise NotImplementedError

    def _get_range(self, key: str, start: int, end: int, version: str) -> Any:
        """The SDK's stream of bytes ``[start, end)`` of ``key`` as of ``version`` (its
        ``stat``), raising what ``_fail`` turns into ``ObjectChanged`` when the version moved
        and ``RangeIgnored`` when the store sent the whole object."""
        raise NotImplementedError

    def _fail(self, e: Exception) -> Optional[Exception]:
        """The 503 an SDK error means; None for anything else (a bug: raised as it is)."""
        raise NotImplementedError

    # shared ------------------------------------------------------------------------------------

    def _sdk(self, e: Exception) -> Exception:
        err = self._fail(e)
        return e if err is None else err

    def stat(self) -> ObjectInfo:
        try:
            if self.key and not self.key.endswith("/"):
                head = self._head(self.key)
                if head is not None:
                    self._versions = {"": head[0]}
                    return ObjectInfo("object", head[0], head[1])
            prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
            listing = self._list(prefix)
        except Exception as e:
            raise self._sdk(e) from None
        info = prefix_info(self.url, prefix, listing)
        self._prefix = prefix
        self._versions = {key[len(prefix):]: tag for key, _, tag in listing}
        return info

    def open(self, relative: str = "") -> Stream:
        key = self._prefix + relative if relative else self.key
        try:
            return _Guarded(self._get(key), self)
        except Exception as e:
            raise self._sdk(e) from None


    def supports_ranges(self) -> bool:
        return True

    def read_range(self, relative: str, start: int, end: int) -> Stream:
        """Bytes ``[start, end)`` of the object (``relative`` under a prefix), pinned to the
        version ``stat`` saw (see ``ranges``)."""
        key = self._prefix + relative if relative else self.key
        try:
            return _Guarded(self._get_range(key, start, end, self._versions.get(relative, "")),
                            self)
        except RangeIgnored:
            raise
        except Exception as e:
            raise self._sdk(e) from None


class _Guarded:
    """An SDK's stream whose errors mid-download become the store's one-line 503s."""

    def __init__(self, raw: Any, store: ObjectStore) -> None:
        self._raw = raw
        self._store = store

    def read(self, n: int = -1) -> bytes:
        try:
            return bytes(self._raw.read(n) if n >= 0 else self._raw.read())
        except Exception as e:  # connection errors mid-body (OSError: requests' too) included
            if self._store._fail(e) is None and not isinstance(e, OSError):
                raise
            raise unavailable(self._store.url, f"download interrupted ({type(e).__name__})") from None

    def close(self) -> None:
        self._raw.close()


def redact(url: str) -> str:
    """The URL without user info or query string (presigned signatures, tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def unavailable(url: str, what: str, *, retry_after: int = 5) -> ModelUnavailable:
    return ModelUnavailable(f"cannot fetch {redact(url)}: {what}", retry_after=retry_after)


def changed(url: str, what: str = "") -> ObjectChanged:
    return ObjectChanged(f"cannot fetch {redact(url)}: {what or 'the object'} changed while it "
                         "was being read; the next load reads the new version", retry_after=1)


def prefix_info(url: str, prefix: str, listing: List[Tuple[str, int, str]]) -> ObjectInfo:
    """The ObjectInfo of a listed prefix: (full key, size, etag) of each object under it;
    "directory" placeholder keys are skipped, an empty prefix is a missing model."""
    entries = [(key[len(prefix):], size, tag) for key, size, tag in listing
               if key[len(prefix):] and not key.endswith("/")]
    if not entries:
        raise unavailable(url, "no such object or prefix (NoSuchKey)")
    return ObjectInfo("prefix", prefix_version(entries), sum(e[1] for e in entries),
                      tuple((k, s) for k, s, _ in sorted(entries)))


def prefix_version(entries: List[Tuple[str, int, str]]) -> str:
    """A version for a prefix: a digest of every (key, size, etag) under it."""
    import hashlib

    h = hashlib.sha256()
    for key, size, tag in sorted(entries):
        h.update(f"{key}\0{size}\0{tag}\n".encode())
    return "prefix-" + h.hexdigest()[:32]


class Progress:
    """Logs bytes, rate and ETA at most once a second for large transfers."""

    def __init__(self, what: str, total: int, *, min_size: int = 16 << 20,
                 interval: float = 1.0) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start
        self._interval = interval
        self._quiet = 0 < total < min_size

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self._quiet and now - self._last >= self._interval:
            self._last = now
            log.info("%s", self.line(now))

    def line(self, now: Optional[float] = None) -> str:
        now = now or time.monotonic()
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        if self.total > 0:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            return (f"{self.what}: {self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB "
                    f"({100 * self.done / self.total:.0f}%), {rate / 1e6:.1f} MB/s, ETA {eta:.1f}s")
        return f"{self.what}: {self.done / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s"


def iter_chunks(stream: Readable, size: int = CHUNK) -> Iterator[bytes]:
    """``stream``'s bytes, ``size`` at a time, to its end: the one copy loop storage uses."""
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk
