"""How much disk a model needs where it is fetched: ``render --model-size``.

The rule is the fetch's own (``storage.archive.check_disk``): it writes only while what it will
write plus ``DISK_MARGIN`` (16 MiB) is free, and ``MODEL_CACHE_DIR`` holds one version at a time
(older ones are deleted before a fetch).  What it writes, by what ``model_path`` names:

- a local directory: nothing; it is served in place (a model baked into the image, /app/model);
- a prefix (``s3://bucket/models/m/``): every object, the model's bytes;
- a .tar / .tar.gz / .tgz: extracted as it streams in, the archive never stored, but its size is
  checked free first: max(archive, extracted);
- a .zip: spooled whole, then extracted beside it: archive + max(archive, extracted).

Sizes are bytes or units of 1024, as every size tfserverless reads (``800MB`` is 800 MiB):
rounding up is the safe side for a disk.  Platforms' "MB" are counted as MiB (AWS's 10240 MB
of ephemeral storage is its "10 GB").
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from typing import Dict, Mapping, NamedTuple, Optional
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, TFServerlessError
from ..storage.archive import DISK_MARGIN, kind_of
from ..storage.registry import scheme_of

MIB = 1 << 20
GIB = 1 << 30
#: --model-size auto on a remote archive: its extracted bytes, estimated as this x its own (a
#: SavedModel's float weights barely compress; text assets do, hence room for 2x)
ARCHIVE_FACTOR = 2
MAX_MODEL_BYTES = 1 << 40  # 1 TiB: past any disk a platform here gives; more is a typo
_UNITS = {"": 1, "k": 1 << 10, "m": MIB, "g": GIB, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]{1,16})(?:\.([0-9]{1,9}))? ?(?:([kmgt])(?:ib?|b)?|b)?",
                   re.IGNORECASE | re.ASCII)
_HINT = "expected bytes (800000000), units of 1024 (800MB, 1.5GiB, 2G) or auto"


class Disk(NamedTuple):
    model_bytes: int  # the SavedModel's bytes once fetched (and extracted)
    need_bytes: int  # free disk the fetch needs (0: served in place, nothing fetched)
    how: str  # where model_bytes came from, said in the output and in refusals

    @property
    def need_mib(self) -> int:
        return -(-self.need_bytes // MIB)

    def line(self) -> str:
        if not self.need_bytes:
            return f"model of {human(self.model_bytes)} ({self.how}) is served in place: no disk"
        return (f"model of {human(self.model_bytes)} ({self.how}) needs {self.need_mib} MiB of "
                "disk to fetch and extract")

    def refused(self, limit: str, advice: str) -> ConfigError:
        return ConfigError(f"{self.line()}; {limit}: {advice}")


def human(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def parse_model_size(text: str) -> int:
    """``'800MB'``, ``'1.5GiB'``, ``'2G'``, ``'123'`` -> bytes (rounded up); anything else,
    0, or over 1 TiB is a one-line ConfigError."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    m = _SIZE.fullmatch(text.strip())
    if not m:
        what = "is negative" if text.strip().startswith("-") else "is not a size"
        raise ConfigError(f"--model-size {shown!r} {what}; {_HINT}")
    whole, frac, unit = m.group(1), m.group(2) or "", _UNITS[(m.group(3) or "").lower()]
    n = int(whole) * unit + -(-int(frac or "0") * unit // int("1" + "0" * len(frac)))
    if n <= 0:
        raise ConfigError(f"--model-size {shown!r} is 0 bytes; {_HINT}")
    if n > MAX_MODEL_BYTES:
        raise ConfigError(f"--model-size {shown!r} is over 1 TiB, more disk than any platform "
                          "here gives; expected the SavedModel's size")
    return n


def _need(kind: str, model: int, archive: int) -> int:
    needs = {"prefix": model, "tar": max(model, archive), "zip": archive + max(model, archive)}
    return needs[kind] + DISK_MARGIN


def _kind_by_name(url: str) -> str:
    """What the fetch will make of ``url`` (it sniffs the bytes too): only a .zip is spooled."""
    return "zip" if urlsplit(url).path.lower().endswith(".zip") else "prefix"


def _walk(path: str) -> int:
    from ..sizing import tree_bytes  # one walk for both: links followed, bounded, unreadable skipped

    return tree_bytes(path).nbytes


def _extracted(path: str, kind: str) -> int:
    """What the fetch will write from a local archive, from its headers (a tar's links are
    written as copies of their targets)."""
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            return sum(i.file_size for i in zf.infolist())
    sizes: Dict[str, int] = {}
    total = 0
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            name = posixpath.normpath(m.name)
            if m.isfile():
                sizes[name] = m.size
                total += m.size
            elif m.issym() or m.islnk():
                base = posixpath.dirname(name) if m.issym() else ""
                total += sizes.get(posixpath.normpath(posixpath.join(base, m.linkname)), 0)
    return total


def _local_archive(path: str, given: Optional[int]) -> Disk:
    with open(path, "rb") as f:
        kind = kind_of(path, f.read(512))
    if not kind:
        raise ConfigError(f"model_path {path} is a file but not a .tar, .tar.gz, .tgz or .zip "
                          "archive; expected an archive or a SavedModel directory")
    archive = os.path.getsize(path)
    if given is not None:
        return Disk(given, _need(kind, given, archive), "--model-size")
    try:
        model = _extracted(path, kind)
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
            OSError) as e:
        raise ConfigError(f"model_path {path}: cannot read the archive to size it "
                          f"({type(e).__name__}); expected a whole archive, or --model-size "
                          "SIZE") from None
    return Disk(model, _need(kind, model, archive), f"the local {kind} extracted")


def _remote(url: str, environ: Mapping[str, str]) -> Disk:
    from ..config import Config
    from ..storage import open_source, redact

    try:
        info = open_source(url, Config.from_environ(environ)).stat()
    except TFServerlessError as e:  # unreachable, missing, no credentials: already redacted
        raise ConfigError(f"--model-size auto: {e.message}; expected a reachable model_path or "
                          "--model-size SIZE") from None
    except Exception as e:  # an SDK not installed or failing: its text may carry the request
        raise ConfigError(f"--model-size auto: cannot stat {redact(url)} ({type(e).__name__}); "
                          "expected a reachable model_path or --model-size SIZE") from None
    if info.kind == "prefix":
        return Disk(info.size, _need("prefix", info.size, 0),
                    f"{len(info.entries)} objects under the prefix")
    kind = "zip" if _kind_by_name(url) == "zip" else "tar"
    model = ARCHIVE_FACTOR * info.size
    return Disk(model, _need(kind, model, info.size),
                f"estimated {ARCHIVE_FACTOR}x the {human(info.size)} archive: --model-size "
                "gives its extracted size")


def measure(model_path: str, flag: Optional[str], environ: Mapping[str, str]) -> Optional[Disk]:
    """The disk ``model_path`` needs: from ``--model-size SIZE``; with no flag, only from a
    local path (read here, no network), else None (the platform's default disk, as before);
    with ``auto``, also from the store (one stat: a HEAD, or a listing of the prefix)."""
    given = None if flag is None or flag == "auto" else parse_model_size(flag)
    if scheme_of(model_path) in ("", "file"):
        path = unquote(urlsplit(model_path).path) if "://" in model_path else model_path
        if os.path.isdir(path):
            return Disk(_walk(path) if given is None else given, 0,
                        "--model-size" if given else "a local directory")
        if os.path.isfile(path):
            return _local_archive(path, given)
        if flag == "auto":
            raise ConfigError(f"model_path {path} does not exist here, so --model-size auto "
                              "cannot size it; expected --model-size SIZE")
    elif flag == "auto":
        return _remote(model_path, environ)
    if given is None:
        return None
    kind = _kind_by_name(model_path)  # an unseen zip: its archive taken as big as the model
    return Disk(given, _need(kind, given, given if kind == "zip" else 0), "--model-size")


__all__ = ["ARCHIVE_FACTOR", "Disk", "measure", "parse_model_size"]
