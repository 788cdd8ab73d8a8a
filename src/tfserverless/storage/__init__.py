"""Fetch a model (or warm-up file) from where the user keeps it; knows nothing of requests.

``MODEL_PATH`` may be a local directory (served in place), a local archive, ``oss://``,
``s3://``, ``gs://`` or ``http(s)://``.  Remote models land in a cache under ``MODEL_CACHE_DIR`` keyed
by the URL and the object's version (ETag / Last-Modified / listing digest): one download
and one extraction per version even across gunicorn workers (a file lock), into a temp
directory renamed into place only when complete, with a manifest that is verified on reuse.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from typing import IO, Any, Dict, List, NamedTuple

from ..config import Config
from ..errors import ModelUnavailable, TFServerlessError
from .archive import (
    ArchiveRefused,
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

# scheme -> module implementing ``open_source(url, config) -> Source``; imported on first use
SCHEMES: Dict[str, str] = {
    "": "tfserverless.storage.local",
    "file": "tfserverless.storage.local",
    "http": "tfserverless.storage.http",
    "https": "tfserverless.storage.http",
    "s3": "tfserverless.storage.s3",
    "oss": "tfserverless.storage.oss",
    "gs": "tfserverless.storage.gcs",
}
MANIFEST = ".tfserverless-manifest.json"


def scheme_of(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def open_source(url: str, config: Config) -> Source:
    scheme = scheme_of(url)
    module = SCHEMES.get(scheme)
    if module is None:
        raise ModelUnavailable(
            f"unsupported scheme {scheme}:// in {redact(url)}; expected oss://, s3://, gs://, "
            "http(s)://, file:// or a local path", retry_after=60)
    source: Source = importlib.import_module(module).open_source(url, config)
    return source


def find_saved_model_root(path: str, *, quiet: bool = False) -> str:
    """The directory holding saved_model.pb; for TF Serving's ``<name>/<version>/`` layout the
    highest numeric version (said in the log)."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    found: List[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "saved_model.pb" in files:
            found.append(root)
            dirs[:] = []
    if not found:
        raise ModelUnavailable(f"no saved_model.pb found under {os.path.basename(path) or path}; "
                               "expected a SavedModel (or <name>/<version>/saved_model.pb)")
    depth = min(f.count(os.sep) for f in found)
    shallow = [f for f in found if f.count(os.sep) == depth]
    versions = [f for f in shallow if os.path.basename(f).isdigit()]
    if versions:
        best = max(versions, key=lambda f: int(os.path.basename(f)))
        if not quiet:
            log.info("versioned layout: serving version %s of %s", os.path.basename(best),
                     sorted(int(os.path.basename(v)) for v in versions))
        return best
    return sorted(shallow)[0]


class Fetched(NamedTuple):
    path: str  # the SavedModel root to load
    cached: bool  # served from an earlier complete download
    seconds: float  # fetch + extract wall time (0 for local directories)
    nbytes: int  # bytes downloaded


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _verify(path: str) -> bool:
    """A cached model is used only when its manifest exists and every file matches it."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        for rel, size in manifest["files"].items():
            if os.path.getsize(os.path.join(path, rel)) != size:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_manifest(path: str, url: str, version: str) -> None:
    files = {}
    for root, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as f:
        json.dump({"url": redact(url), "version": version, "files": files,
                   "fetched_at": time.time()}, f)


class _Prefetch:
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


def _download_object(source: Source, info: ObjectInfo, dest: str, config: Config) -> int:
    url = source.url
    limits = Limits(max_bytes=config.max_extract_bytes, max_members=config.max_archive_members)
    progress = Progress(f"download {redact(url)}", info.size)
    raw = source.open()
    prefetch = _Prefetch(raw)
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


def _download_prefix(source: Source, info: ObjectInfo, dest: str, config: Config) -> int:
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


class _FileLock:
    """An exclusive lock shared by every process on this disk (gunicorn workers)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> _FileLock:
        import fcntl  # POSIX only; the function runtimes all are

        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def fetch(url: str, config: Config) -> Fetched:
    """Make the model at ``url`` available on local disk; returns its SavedModel root."""
    source = open_source(url, config)
    local = source.local_dir()
    if local is not None:
        return Fetched(find_saved_model_root(local), True, 0.0, 0)
    url_dir = os.path.join(config.model_cache_dir, _digest(redact(url)))
    try:
        info = source.stat()
    except ModelUnavailable as e:
        # the store is unreachable: a verified copy from an earlier fetch still serves
        for name in sorted(os.listdir(url_dir)) if os.path.isdir(url_dir) else []:
            if name.startswith("v-") and _verify(os.path.join(url_dir, name)):
                log.warning("%s; serving the cached copy fetched earlier", e.message)
                return Fetched(find_saved_model_root(os.path.join(url_dir, name)), True, 0.0, 0)
        raise
    final = os.path.join(url_dir, "v-" + _digest(info.version))
    marker = os.path.join(url_dir, "refused-" + _digest(info.version))
    _refused_before(marker)
    if _verify(final):
        log.info("using cached %s (version %s)", redact(url), info.version)
        return Fetched(find_saved_model_root(final), True, 0.0, 0)
    try:
        os.makedirs(url_dir, exist_ok=True)
    except OSError as e:
        raise unavailable(url, f"cache directory {config.model_cache_dir} is not writable "
                               f"({e.strerror})", retry_after=60) from None
    with _FileLock(os.path.join(url_dir, ".lock")):
        if _verify(final):  # another worker finished it while we waited
            log.info("using %s fetched by another worker", redact(url))
            return Fetched(find_saved_model_root(final), True, 0.0, 0)
        t0 = time.monotonic()
        for stale in os.listdir(url_dir):  # leftovers of crashed fetches, old versions
            if stale.startswith((".tmp-", "v-")):
                shutil.rmtree(os.path.join(url_dir, stale), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=url_dir)
        try:
            dest = os.path.join(tmp, "model")
            os.mkdir(dest)
            if info.kind == "prefix":
                nbytes = _download_prefix(source, info, dest, config)
            else:
                nbytes = _download_object(source, info, dest, config)
            find_saved_model_root(dest, quiet=True)  # refuse to cache what cannot be served
            _write_manifest(dest, url, info.version)
            os.rename(dest, final)
        except ArchiveRefused as e:
            _remember_refusal(marker, e.message)
            raise
        except TFServerlessError:
            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise unavailable(url, "disk full while fetching", retry_after=60) from None
            raise unavailable(url, f"local I/O error ({e.strerror})") from None
        except Exception as e:  # SDK errors may carry request details: name the type only
            raise unavailable(url, f"download failed ({type(e).__name__})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - t0
    log.info("fetched %s (version %s): %.1f MB in %.2fs", redact(url), info.version,
             nbytes / 1e6, seconds)
    return Fetched(find_saved_model_root(final), False, seconds, nbytes)


def _refused_before(marker: str) -> None:
    """This version of the object was refused already: say so again without downloading it."""
    try:
        with open(marker, encoding="utf-8") as f:
            message = f.read().strip()
    except OSError:
        return
    raise ModelUnavailable(f"{message} (this version was refused before; it is fetched again "
                           "once the object changes)", retry_after=60)


def _remember_refusal(marker: str, message: str) -> None:
    with contextlib.suppress(OSError):
        with open(marker + ".tmp", "w", encoding="utf-8") as f:
            f.write(message)
        os.replace(marker + ".tmp", marker)


def fetch_model(config: Config) -> Fetched:
    return fetch(config.require_model_path(), config)


def read_bytes(url: str, config: Config, *, limit: int = 256 << 20) -> bytes:
    """A small object (warm-up files) read whole, from any scheme."""
    source = open_source(url, config)
    info = source.stat()
    if info.kind != "object":
        raise unavailable(url, "expected a single file, found a directory or prefix")
    if info.size > limit:
        raise unavailable(url, f"{info.size} bytes is over the {limit} byte limit")
    stream = source.open()
    try:
        data = stream.read(limit + 1)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return bytes(data)


__all__ = ["SCHEMES", "Fetched", "fetch", "fetch_model",
           "find_saved_model_root", "open_source", "read_bytes", "redact"]
