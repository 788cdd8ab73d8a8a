"""Parallel ranged reads: one object split into parts read over several connections, or many
objects read at once, every part pinned to the version ``stat`` saw.

Object stores cap what one stream carries (tens of MB/s) while their aggregate grows with
connections, so a large model is read as ``FETCH_PART_BYTES`` parts over
``FETCH_CONNECTIONS`` connections:

* ``to_files``: objects (a prefix's, or a zip's spool) written at their offsets as parts
  arrive (``os.pwrite``: nothing whole in memory);
* ``Ordered``: one object as a stream, parts read ahead through a bounded window and handed on
  in order (an archive's extractor decompresses while the rest downloads).

A part that fails (reset, 5xx, short read, stall past the SDK's read timeout) is retried alone
from where it stopped, with backoff; a version that moved (``If-Match`` / generation: a 412) is
``ObjectChanged``, never retried here (the load is retried whole: nothing partial is cached);
a store that answers a range with the whole object raises ``RangeIgnored`` on the first part,
and the caller falls back to one stream.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from .._compat import Protocol
from ..errors import ModelUnavailable
from .base import CHUNK, ObjectChanged, RangeIgnored, Stream, unavailable


class Ranged(Protocol):
    """What a source offers for parallel reads (``ObjectStore`` and ``HttpSource``)."""

    url: str

    def read_range(self, relative: str, start: int, end: int) -> Stream:
        """Bytes ``[start, end)`` of the object (``relative`` under a prefix), of the version
        ``stat`` saw; ``RangeIgnored`` when the store answers with the whole object."""


class Settings(NamedTuple):
    connections: int = 16
    part_bytes: int = 8 << 20
    retries: int = 4  # per part
    backoff: float = 0.25  # seconds before the first retry, doubled after each


class Stats:
    """What a ranged fetch did, for the cold-start log line and /metrics."""

    def __init__(self) -> None:
        self.parts = 0
        self.retried = 0
        self.connections = 0
        self._lock = threading.Lock()

    def add(self, parts: int = 0, retried: int = 0) -> None:
        with self._lock:
            self.parts += parts
            self.retried += retried


def split(size: int, part: int) -> List[Tuple[int, int]]:
    """``[start, end)`` of each part of an object of ``size`` bytes."""
    return [(s, min(s + part, size)) for s in range(0, size, part)]


class Stop:
    """Cancels a fetch's parts at once: set, and every stream being read is closed, so a part
    blocked on a slow connection ends now, not when its next chunk arrives."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._open: List[Stream] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def set(self) -> None:
        self._event.set()
        with self._lock:
            streams, self._open = self._open, []
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.close()

    def track(self, stream: Stream) -> None:
        with self._lock:
            self._open.append(stream)
        if self._event.is_set():
            self.set()

    def untrack(self, stream: Stream) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._open.remove(stream)


def read_part(source: Ranged, relative: str, start: int, end: int,
              write: Callable[[int, bytes], None], settings: Settings, stats: Stats,
              stop: Stop) -> None:
    """Read ``[start, end)`` into ``write(offset, data)``, retrying from where a failure left
    off.  A response that ends early but cleanly (a server capping its ranges) is followed by
    a request for the rest, not counted as a failure; only a request that brings nothing new
    is."""
    pos = start
    error: Optional[ModelUnavailable] = None
    failures = shorts = 0
    while pos < end:
        if stop.is_set():
            return
        before, clean = pos, False
        try:
            stream = source.read_range(relative, pos, end)
            stop.track(stream)
            try:
                while pos < end:
                    chunk = stream.read(min(CHUNK, end - pos))
                    if not chunk:
                        break
                    write(pos, chunk)
                    pos += len(chunk)
            finally:
                stop.untrack(stream)
                with contextlib.suppress(Exception):
                    stream.close()
        except (ObjectChanged, RangeIgnored):
            raise
        except Exception as e:  # the store's one-line 503, or a stream we closed to stop
            if stop.is_set():
                return
            if not isinstance(e, ModelUnavailable):
                raise
            error = e
        else:
            clean = True  # the response ended without an error, short of ``end``
            error = unavailable(source.url, f"part {start}-{end} of {relative or 'the object'} "
                                            f"ended after {pos - start} bytes")
        if pos >= end or stop.is_set():
            break
        if clean and pos > before and shorts < 1000:
            shorts += 1
            continue  # a short but clean answer: ask for the rest
        failures += 1
        if failures > settings.retries:
            raise error
        stats.add(retried=1)
        stop.wait(settings.backoff * (1 << (failures - 1)))
    if not stop.is_set():
        stats.add(parts=1)


def to_files(source: Ranged, entries: List[Tuple[str, int, str]], settings: Settings,
             stats: Stats, progress: Callable[[int], None]) -> None:
    """Every ``(relative, size, path)`` object into its file, all parts at once over
    ``settings.connections`` connections (a prefix's small objects go together).  A file is
    open only while one of its parts is being read (a prefix may hold 100,000 objects)."""
    stop = Stop()
    lock = threading.Lock()
    tasks = []
    for rel, size, path in entries:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        tasks += [(rel, start, end, path) for start, end in split(size, settings.part_bytes)]

    def part(rel: str, start: int, end: int, path: str) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            def write(offset: int, data: bytes) -> None:
                os.pwrite(fd, data, offset)
                with lock:
                    progress(len(data))
            read_part(source, rel, start, end, write, settings, stats, stop)
        finally:
            os.close(fd)

    stats.connections = min(settings.connections, len(tasks)) or 1
    pool = ThreadPoolExecutor(stats.connections, "model-fetch")
    futures = []
    try:
        futures = [pool.submit(part, *task) for task in tasks]
        pending = set(futures)
        while pending:  # in slices, so an interrupt is seen between them
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                error = failed[0].exception()
                assert error is not None
                raise error
    finally:  # an error, or an interrupt: queued parts never start, running ones stop now
        stop.set()
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)


class Ordered:
    """One object as a stream (``read``), its parts read ahead over ``settings.connections``
    connections, at most ``connections + 2`` parts held in memory."""

    def __init__(self, source: Ranged, relative: str, size: int, settings: Settings,
                 stats: Stats) -> None:
        self._source, self._relative, self._settings, self._stats = source, relative, settings, stats
        self._parts = split(size, settings.part_bytes)
        self._stop = Stop()
        stats.connections = min(settings.connections, len(self._parts)) or 1
        self._pool = ThreadPoolExecutor(stats.connections, "model-fetch")
        # parts held: the one being handed on and ``_window`` more read or being read
        self._window = stats.connections + 1
        self._futures: Dict[int, Future[bytearray]] = {}
        self._next = 0  # the part read() hands on next
        self._buf = bytearray()  # the part being handed on, from ``_pos``
        self._pos = 0
        for i in range(min(self._window, len(self._parts))):
            self._submit(i)

    def _submit(self, i: int) -> None:
        self._futures[i] = self._pool.submit(self._fetch, *self._parts[i])

    def _fetch(self, start: int, end: int) -> bytearray:
        out = bytearray(end - start)

        def write(offset: int, data: bytes) -> None:
            out[offset - start:offset - start + len(data)] = data

        read_part(self._source, self._relative, start, end, write, self._settings, self._stats,
                  self._stop)
        return out  # handed on as is: a bytes() copy would hold each part twice

    def read(self, n: int = -1) -> bytes:
        """At most ``n`` bytes (all that is left with -1); b"" only at the end."""
        if n < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        while self._pos >= len(self._buf) and self._next < len(self._parts):
            fut = self._futures.pop(self._next)
            self._buf, self._pos = fut.result(), 0  # the part's error, if it failed for good
            if self._next + self._window < len(self._parts):
                self._submit(self._next + self._window)
            self._next += 1
        with memoryview(self._buf) as view:  # a copy of n bytes, never of the rest
            out = bytes(view[self._pos:self._pos + n])
        self._pos += len(out)
        return out

    def close(self) -> None:
        self._stop.set()
        for fut in self._futures.values():
            fut.cancel()
        self._pool.shutdown(wait=True)


__all__ = ["Ordered", "Ranged", "Settings", "Stats", "Stop", "read_part", "split", "to_files"]
