"""Downloads into a directory: one object (archives extracted while they stream) or every
object under a prefix, with a read-ahead thread."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from typing import IO, Any

from ..config import Config
from .archive import (
    Limits,
    Peekable,
    _check_disk,
    _safe_relpath,
    extract_tar,
    extract_zip,
    kind_of,
)
from .base import CHUNK, ObjectInfo, Progress, Source, redact, unavailable

log = logging.getLogger("tfserverless.storage")


class Prefetch:
    """Reads the network stream in a thread (bounded buffer), so download and extraction
    overlap instead of taking turns."""

    def __init__(self, stream: IO[bytes], depth: int = 32) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stream = stream
        self._buf = b""
        self._done = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="model-download", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                chunk = self._stream.read(CHUNK)
                self._q.put(chunk)
                if not chunk:
                    return
        except BaseException as e:  # handed to the reading thread
            self._q.put(e)

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            item = self._q.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                break
            self._buf += item
            if n >= 0 and len(self._buf) >= n:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self, raw: Any) -> None:
        """Stop the reader thread (also when extraction gave up early) and close the stream."""
        self._stop = True
        with contextlib.suppress(Exception):
            raw.close()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._q.get(timeout=0.1)


def download_object(source: Source, info: ObjectInfo, dest: str, config: Config) -> int:
    url = source.url
    limits = Limits(max_bytes=config.max_extract_bytes, max_members=config.max_archive_members)
    progress = Progress(f"download {redact(url)}", info.size)
    raw = source.open()
    prefetch = Prefetch(raw)
    try:
        stream = Peekable(prefetch, progress)  # type: ignore[arg-type]
        kind = kind_of(url, stream.peek(512))
        if kind == "tar":
            _check_disk(url, dest, info.size)
            extract_tar(url, stream, dest, limits)  # type: ignore[arg-type]
            while stream.read(CHUNK):  # drain the tail (tar padding): truncation still shows
                pass
        elif kind == "zip":
            _check_disk(url, dest, 2 * info.size)
            spool = os.path.join(os.path.dirname(dest), "archive.zip")
            with open(spool, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
            extract_zip(url, spool, dest, limits)
            os.unlink(spool)
        else:
            raise unavailable(url, "not a .tar, .tar.gz, .tgz or .zip archive; expected an "
                                   "archive or a prefix/directory holding a SavedModel", retry_after=60)
    finally:
        prefetch.close(raw)
    if progress.total > 16 << 20:
        log.info("%s", progress.line())
    return progress.done


def download_prefix(source: Source, info: ObjectInfo, dest: str, config: Config) -> int:
    url = source.url
    if len(info.entries) > config.max_archive_members:
        raise unavailable(url, f"prefix holds {len(info.entries)} objects, over "
                               f"{config.max_archive_members} (MAX_ARCHIVE_MEMBERS)")
    if info.size > config.max_extract_bytes:
        raise unavailable(url, f"prefix holds {info.size} bytes, over {config.max_extract_bytes} "
                               "(MAX_EXTRACT_BYTES)")
    _check_disk(url, dest, info.size)
    progress = Progress(f"download {redact(url)}", info.size)
    for rel, size in info.entries:
        safe = _safe_relpath(url, rel)
        path = os.path.join(dest, safe)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stream = source.open(rel)
        got = 0
        try:
            with open(path, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    got += len(chunk)
                    progress.add(len(chunk))
                    out.write(chunk)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        if got != size:
            raise unavailable(url, f"object {rel} truncated: {got} of {size} bytes")
    return progress.done
