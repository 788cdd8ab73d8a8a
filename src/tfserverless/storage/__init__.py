"""Fetch a model (or warm-up file) from where the user keeps it; knows nothing of requests.

``MODEL_PATH`` may be a local directory (served in place), a local archive, ``oss://``,
``s3://``, ``gs://`` or ``http(s)://``.  Remote models land in a cache under
``MODEL_CACHE_DIR`` keyed by the URL and the object's version (ETag / Last-Modified / listing
digest): one download and one extraction per version even across gunicorn workers (a file
lock), into a temp directory renamed into place only when complete, with a manifest that is
verified on reuse.

By concern: ``registry`` (scheme -> backend), ``base`` (the Source interface and the shared
object-store logic), ``download`` (object / prefix into a directory), ``archive`` (safe
extraction), ``cache`` (manifests, refusals), ``lock`` (one fetch per version across
workers), ``layout`` (where the SavedModel is); this module runs a fetch through them.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from typing import Callable, NamedTuple, Optional

from ..config import Config
from ..errors import ModelUnavailable, TFServerlessError
from .archive import ArchiveRefused
from .base import redact, unavailable
from .cache import digest, is_complete, refused_before, remember_refusal, write_manifest
from .download import download_object, download_prefix
from .layout import find_saved_model_root
from .lock import FileLock
from .ranges import Stats
from .registry import SCHEMES, open_source

log = logging.getLogger("tfserverless.storage")


class Fetched(NamedTuple):
    path: str  # the SavedModel root to load
    cached: bool  # served from an earlier complete download
    seconds: float  # fetch + extract wall time (0 for local directories)
    nbytes: int  # bytes downloaded
    connections: int = 0  # parallel connections the download used (1: one stream)
    retried: int = 0  # parts read again after a failure


def fetch(url: str, config: Config, opened: Optional[Callable[[], None]] = None) -> Fetched:
    """Make the model at ``url`` available on local disk; returns its SavedModel root.
    ``opened`` is called once the store's SDK is imported and its client made (the caller
    starts importing the engine then: imported at once, each held the other up on the GIL)."""
    source = open_source(url, config)
    if opened is not None:
        opened()
    local = source.local_dir()
    if local is not None:
        return Fetched(find_saved_model_root(local), True, 0.0, 0)
    url_dir = os.path.join(config.model_cache_dir, digest(redact(url)))
    try:
        info = source.stat()
    except ModelUnavailable as e:
        # the store is unreachable: a verified copy from an earlier fetch still serves
        for name in sorted(os.listdir(url_dir)) if os.path.isdir(url_dir) else []:
            if name.startswith("v-") and is_complete(os.path.join(url_dir, name)):
                log.warning("%s; serving the cached copy fetched earlier", e.message)
                return Fetched(find_saved_model_root(os.path.join(url_dir, name)), True, 0.0, 0)
        raise
    final = os.path.join(url_dir, "v-" + digest(info.version))
    marker = os.path.join(url_dir, "refused-" + digest(info.version))
    refused_before(marker)
    if is_complete(final):
        log.info("using cached %s (version %s)", redact(url), info.version)
        return Fetched(find_saved_model_root(final), True, 0.0, 0)
    try:
        os.makedirs(url_dir, exist_ok=True)
    except OSError as e:
        raise unavailable(url, f"cache directory {config.model_cache_dir} is not writable "
                               f"({e.strerror})", retry_after=60) from None
    with FileLock(os.path.join(url_dir, ".lock")):
        if is_complete(final):  # another worker finished it while we waited
            log.info("using %s fetched by another worker", redact(url))
            return Fetched(find_saved_model_root(final), True, 0.0, 0)
        t0 = time.monotonic()
        for stale in os.listdir(url_dir):  # leftovers of crashed fetches, old versions
            if stale.startswith((".tmp-", "v-")):
                shutil.rmtree(os.path.join(url_dir, stale), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=url_dir)
        stats = Stats()
        try:
            dest = os.path.join(tmp, "model")
            os.mkdir(dest)
            if info.kind == "prefix":
                nbytes = download_prefix(source, info, dest, config, stats)
            else:
                nbytes = download_object(source, info, dest, config, stats)
            find_saved_model_root(dest, quiet=True, name=redact(url))  # never cache what cannot be served
            write_manifest(dest, url, info.version)
            os.rename(dest, final)
        except ArchiveRefused as e:
            remember_refusal(marker, e.message)
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
    log.info("fetched %s (version %s): %.1f MB in %.2fs (%.1f MB/s, %d connection%s, %d parts "
             "retried)", redact(url), info.version, nbytes / 1e6, seconds,
             nbytes / 1e6 / max(seconds, 1e-6), stats.connections,
             "" if stats.connections == 1 else "s", stats.retried)
    return Fetched(find_saved_model_root(final), False, seconds, nbytes, stats.connections,
                   stats.retried)


def fetch_model(config: Config, opened: Optional[Callable[[], None]] = None) -> Fetched:
    return fetch(config.require_model_path(), config, opened)


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
