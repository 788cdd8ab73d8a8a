"""Downloads into a directory: one object (archives extracted while they stream) or every
object under a prefix, with a read-ahead thread."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
from typing import Any, Callable, Dict, Optional

from ..config import Config
from .archive import (
    ArchiveLimits,
    ArchiveRefused,
    Peekable,
    check_disk,
    extract_tar,
    extract_zip,
    kind_of,
    safe_relpath,
)
from .base import (
    CHUNK,
    ObjectChanged,
    ObjectInfo,
    Progress,
    RangeIgnored,
    Source,
    Stream,
    changed,
    iter_chunks,
    redact,
    unavailable,
)
from .ranges import Ordered, Settings, Stats, to_files

log = logging.getLogger("tfserverless.storage")


class Prefetch:
    """Reads the network stream in a thread (bounded buffer), so download and extraction
    overlap instead of taking turns."""

    def __init__(self, stream: Stream, depth: int = 32) -> None:
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


def settings_for(config: Config) -> Settings:
    return Settings(connections=config.fetch_connections, part_bytes=config.fetch_part_bytes)


def _verify_unchanged(source: Source, info: ObjectInfo) -> None:
    """After a ranged fetch: the version it read is still the one there (a store that does not
    enforce ``If-Match`` on every part cannot have mixed two versions unseen)."""
    if source.stat().version != info.version:
        raise changed(source.url)


def _empty(dest: str) -> None:
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _ranged(source: Source, info: ObjectInfo, dest: str, fetch: Callable[[], int]) -> Optional[int]:
    """``fetch()`` over ranged reads, then the version checked again; None when the store
    cannot serve them after all (it ignores Range, or its servers disagree on the ETag: a
    load-balanced web server whose ETags include the inode), and ``dest`` is emptied for one
    stream."""
    try:
        n = fetch()
        _verify_unchanged(source, info)
        return n
    except RangeIgnored:
        why = "answers ranges with whole objects"
    except ObjectChanged:
        if source.stat().version != info.version:
            raise
        why = "gives parts other versions than the object (its ETags differ between servers)"
    except ArchiveRefused:
        if source.stat().version != info.version:  # a mix of two versions, not a bad archive
            raise changed(source.url) from None
        raise
    log.info("%s %s: reading it as one stream", redact(source.url), why)
    _empty(dest)
    return None


def download_object(source: Source, info: ObjectInfo, dest: str, config: Config,
                    stats: Optional[Stats] = None) -> int:
    """One object (an archive) into ``dest``: over parallel ranged reads where the store
    serves them and the object is at least two parts, else one stream."""
    settings = settings_for(config)
    stats = stats or Stats()
    if source.supports_ranges() and settings.connections > 1 \
            and info.size >= 2 * settings.part_bytes:
        n = _ranged(source, info, dest,
                    lambda: _download_object(source, info, dest, config, settings, stats))
        if n is not None:
            return n
    stats.connections = 1
    return _download_object(source, info, dest, config, None, stats)


def _download_object(source: Source, info: ObjectInfo, dest: str, config: Config,
                     ranged: Optional[Settings], stats: Stats) -> int:
    url = source.url
    limits = ArchiveLimits(max_bytes=config.max_extract_bytes, max_members=config.max_archive_members)
    progress = Progress(f"download {redact(url)}", info.size)
    if ranged is not None:
        raw: Any = Ordered(source, "", info.size, ranged, stats)
        reader: Any = raw
    else:
        raw = source.open()
        reader = Prefetch(raw)
    try:
        stream = Peekable(reader, progress)
        kind = kind_of(url, stream.peek(512))
        if kind == "tar":
            check_disk(url, dest, info.size)
            extract_tar(url, stream, dest, limits)
            while stream.read(CHUNK):  # drain the tail (tar padding): truncation still shows
                pass
        elif kind == "zip":
            check_disk(url, dest, 2 * info.size)
            spool = os.path.join(os.path.dirname(dest), "archive.zip")
            with open(spool, "wb") as out:
                for chunk in iter_chunks(stream):
                    out.write(chunk)
            extract_zip(url, spool, dest, limits)
            os.unlink(spool)
        else:
            raise unavailable(url, "not a .tar, .tar.gz, .tgz or .zip archive; expected an "
                                   "archive or a prefix/directory holding a SavedModel", retry_after=60)
    finally:
        if ranged is not None:
            raw.close()
        else:
            reader.close(raw)
    if progress.total > 16 << 20:
        log.info("%s", progress.line())
    return progress.done


def download_prefix(source: Source, info: ObjectInfo, dest: str, config: Config,
                    stats: Optional[Stats] = None) -> int:
    """Every object under a prefix into ``dest``: all at once over parallel ranged reads where
    the store serves them (large objects in parts), else one after another."""
    url = source.url
    if len(info.entries) > config.max_archive_members:
        raise unavailable(url, f"prefix holds {len(info.entries)} objects, over "
                               f"{config.max_archive_members} (MAX_ARCHIVE_MEMBERS)")
    if info.size > config.max_extract_bytes:
        raise unavailable(url, f"prefix holds {info.size} bytes, over {config.max_extract_bytes} "
                               "(MAX_EXTRACT_BYTES)")
    check_disk(url, dest, info.size)
    stats = stats or Stats()
    progress = Progress(f"download {redact(url)}", info.size)
    entries = []
    paths: Dict[str, str] = {}
    for rel, size in info.entries:
        safe = safe_relpath(url, rel)
        if safe in paths:  # "a//b" and "a/b": which one is the model's?
            raise unavailable(url, f"objects {paths[safe]!r} and {rel!r} are both the file "
                                   f"{safe!r}; expected one object per file", retry_after=60)
        paths[safe] = rel
        path = os.path.join(dest, safe)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        entries.append((rel, size, path))
    settings = settings_for(config)
    if source.supports_ranges() and settings.connections > 1:
        def fetch() -> int:
            to_files(source, entries, settings, stats, progress.add)
            return progress.done

        if _ranged(source, info, dest, fetch) is not None:
            return progress.done
        progress = Progress(f"download {redact(url)}", info.size)
        for _, _, path in entries:
            os.makedirs(os.path.dirname(path), exist_ok=True)
    stats.connections = 1
    for rel, size, path in entries:
        stream = source.open(rel)
        got = 0
        try:
            with open(path, "wb") as out:
                for chunk in iter_chunks(stream):
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
