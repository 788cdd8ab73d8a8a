"""Safe extraction of model archives (.tar, .tar.gz/.tgz, .zip).

Nothing an archive says is trusted: member names with ``..`` or absolute paths, links that
point outside, device files and FIFOs are refused; the member count and the bytes actually
written are bounded (zip bombs lie about sizes); free disk is checked before writing.  Tar
archives are extracted while they stream in; zip needs random access, so it is spooled first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from typing import Optional, Tuple, Type, Union

from ..errors import ModelUnavailable
from .base import CHUNK, Progress, Readable, Stream, iter_chunks, redact, unavailable
from .streams import GZIP_MAGIC, INFLATE_ERRORS, TAIL_LIMIT, Counted, Inflate
from .writer import WriteBehind

ZIP_MAGIC = b"PK\x03\x04"
DISK_MARGIN = 16 << 20  # keep this much free beyond what we write


class ArchiveRefused(ModelUnavailable):
    """The object's own bytes are unusable (corrupt, hostile, not a model): fetching the same
    version again cannot help, so it is remembered and not downloaded again until it changes."""


def refused(url: str, what: str) -> ArchiveRefused:
    return ArchiveRefused(f"cannot fetch {redact(url)}: {what}", retry_after=60)

#: what extracting a tar may raise: its format, a short stream, the disk, a corrupt gzip
TAR_ERRORS: Tuple[Type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, *INFLATE_ERRORS)


class ArchiveLimits:
    def __init__(self, *, max_bytes: int, max_members: int) -> None:
        self.max_bytes = max_bytes
        self.max_members = max_members


def kind_of(name: str, head: bytes) -> str:
    """``"zip"``, ``"tar"`` (any compression tarfile streams) or ``""`` when neither."""
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(GZIP_MAGIC) or head.startswith(b"BZh") or head.startswith(b"\xfd7zXZ"):
        return "tar"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    lower = name.lower().split("?")[0]
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lower.endswith(".zip"):
        return "zip"
    return ""


def safe_relpath(url: str, name: str) -> str:
    """Normalise a member name, refusing anything that could land outside the root."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise refused(url, f"archive member {name!r} has an absolute path; refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise refused(url, f"archive member {name!r} climbs out with '..'; refused")
    return "/".join(parts)


#: writing a member failed for its name: the archive's doing (remembered, not retried)
NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                         errno.ELOOP})


def local_error(url: str, e: OSError) -> ModelUnavailable:
    """An OSError while extracting, by its cause: a full disk or quota (retried later), a
    member's name this filesystem cannot hold (refused), else this machine's I/O (retried)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return unavailable(url, "disk full while extracting", retry_after=60)
    if e.errno in NAME_ERRNOS:
        return refused(url, f"archive member cannot be written here ({e.strerror})")
    return unavailable(url, f"local I/O error while extracting ({e.strerror or type(e).__name__})")


def check_disk(url: str, directory: str, need: int) -> None:
    free = shutil.disk_usage(directory).free
    if need + DISK_MARGIN > free:
        raise unavailable(
            url, f"not enough free disk in {directory}: need {need / 1e6:.1f} MB, "
                 f"{free / 1e6:.1f} MB free", retry_after=60)


class _Budget:
    def __init__(self, url: str, limits: ArchiveLimits, dest: str) -> None:
        self.url = url
        self.limits = limits
        self.dest = dest
        self.written = 0
        self.members = 0
        self._checked_at = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise refused(self.url, f"archive has more than {self.limits.max_members} "
                                        "members (MAX_ARCHIVE_MEMBERS); refused")

    def declare(self, n: int) -> None:
        """A member's declared size, checked before a byte of it is written."""
        if self.written + n > self.limits.max_bytes:
            raise refused(self.url, f"archive declares more than {self.limits.max_bytes} bytes "
                                    "(MAX_EXTRACT_BYTES); refused as a possible bomb")

    def add(self, n: int) -> None:
        self.written += n
        if self.written > self.limits.max_bytes:
            raise refused(self.url, f"archive expands past {self.limits.max_bytes} bytes "
                                        "(MAX_EXTRACT_BYTES); refused as a possible bomb")
        if self.written - self._checked_at >= 64 << 20:
            self._checked_at = self.written
            check_disk(self.url, self.dest, 0)


def _copy(src: Stream, path: str, budget: _Budget, writer: WriteBehind) -> None:
    """``src`` into a new file at ``path``, opened, written and closed behind by ``writer``."""
    writer.begin(path)
    try:
        for chunk in iter_chunks(src):
            budget.add(len(chunk))
            writer.write(chunk)
    finally:
        writer.end()


def _target(url: str, dest: str, rel: str) -> str:
    path = os.path.join(dest, rel)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    # a directory created earlier can never be a link (we never create links), so the
    # real path check is cheap insurance against anything we missed
    if not os.path.realpath(parent).startswith(os.path.realpath(dest)):
        raise refused(url, f"archive member {rel!r} resolves outside the model directory")
    return path


def _link_target(url: str, rel: str, linkname: str, *, symlink: bool) -> str:
    base = os.path.dirname(rel) if symlink else ""
    joined = os.path.normpath(os.path.join(base, linkname.replace("\\", "/")))
    if linkname.startswith("/") or joined.startswith("..") or os.path.isabs(joined):
        raise refused(url, f"archive link {rel!r} -> {linkname!r} points outside; refused")
    return joined


def extract_tar(url: str, stream: Readable, dest: str, limits: ArchiveLimits) -> int:
    """Extract a tar stream (compressed or not) into ``dest``; returns bytes written.

    Nothing counts as extracted until the whole archive checked out: gzip CRC-32 and length,
    and the tar's end-of-archive marker (a truncated tar otherwise just looks shorter)."""
    budget = _Budget(url, limits, dest)
    head = stream.peek(2) if hasattr(stream, "peek") else b""
    src: Optional[Union[Inflate, Counted]] = None
    if head.startswith(GZIP_MAGIC):
        src, mode = Inflate(stream), "r|"
    elif head[:1] not in (b"B", b"\xfd"):  # bzip2 and xz check themselves inside tarfile
        src, mode = Counted(stream), "r|"
    else:
        mode = "r|*"
    writer = WriteBehind()
    try:
        # streaming modes only read: typeshed asks every mode's file object to seek and write
        with tarfile.open(fileobj=src or stream, mode=mode) as tar:  # type: ignore[call-overload]
            for m in tar:
                budget.member()
                rel = safe_relpath(url, m.name)
                if not rel:
                    continue
                if m.isdir():
                    os.makedirs(_target(url, dest, rel + "/x")[:-2], exist_ok=True)
                elif m.isfile():
                    budget.declare(m.size)  # refuse a bomb by its header, before writing it
                    member = tar.extractfile(m)
                    if member is None:
                        raise refused(url, f"archive member {m.name!r} cannot be read")
                    _copy(member, _target(url, dest, rel), budget, writer)
                elif m.issym() or m.islnk():
                    # links are materialised as copies of files already extracted inside the
                    # root; anything pointing outside is refused
                    target = _link_target(url, rel, m.linkname, symlink=m.issym())
                    src_path = os.path.join(dest, target)
                    writer.drain()  # every file before it is on disk (opened there too)
                    if not os.path.isfile(src_path):
                        raise refused(url, f"archive link {m.name!r} -> {m.linkname!r} does "
                                           "not name a file extracted before it; refused")
                    budget.add(os.path.getsize(src_path))
                    shutil.copyfile(src_path, _target(url, dest, rel))
                else:
                    raise refused(url, f"archive member {m.name!r} is a device, FIFO or "
                                       "other special file; refused")
            end = tar.offset  # where the end-of-archive marker (two zero blocks) must start
        if src is not None:
            while src.read(CHUNK):  # the rest: padding, and for gzip the CRC-checked trailer
                if src.total > end + TAIL_LIMIT:
                    raise refused(url, "corrupt archive: data past the tar's end")
            if src.total < end + 2 * tarfile.BLOCKSIZE:
                raise EOFError("truncated: no tar end-of-archive marker")
        writer.finish()  # every member on disk (a write's ENOSPC raised here)
    except TAR_ERRORS as e:
        if isinstance(e, OSError):
            raise local_error(url, e) from None
        # a stream that merely ended early may be the network's doing: retried, not remembered
        early = isinstance(e, EOFError) or any(w in str(e) for w in ("truncat", "end of data"))
        what = f"{'truncated' if early else 'corrupt'} archive ({type(e).__name__}: {str(e)[:120]})"
        raise (unavailable(url, what) if early else refused(url, what)) from None
    finally:
        with contextlib.suppress(Exception):  # ended either way; an error is already raised
            writer.finish()
    return budget.written


def extract_zip(url: str, path: str, dest: str, limits: ArchiveLimits) -> int:
    budget = _Budget(url, limits, dest)
    writer = WriteBehind()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise refused(url, f"archive has {len(infos)} members, over "
                                       f"{limits.max_members} (MAX_ARCHIVE_MEMBERS); refused")
            declared = sum(i.file_size for i in infos)
            if declared > limits.max_bytes:
                raise refused(url, f"archive declares {declared} bytes, over "
                                       f"{limits.max_bytes} (MAX_EXTRACT_BYTES); refused")
            check_disk(url, dest, declared)  # a full disk is not the archive's fault
            for info in infos:
                budget.member()
                rel = safe_relpath(url, info.filename)
                mode = info.external_attr >> 16
                if info.flag_bits & 0x1:
                    raise refused(url, f"archive member {info.filename!r} is encrypted")
                if stat.S_ISLNK(mode):
                    raise refused(url, f"archive member {info.filename!r} is a symlink; "
                                           "refused")
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise refused(url, f"archive member {info.filename!r} is a special "
                                           "file; refused")
                if not rel:
                    continue
                if info.is_dir():
                    os.makedirs(_target(url, dest, rel + "/x")[:-2], exist_ok=True)
                    continue
                with zf.open(info) as src:
                    _copy(src, _target(url, dest, rel), budget, writer)
        writer.finish()
    except OSError as e:  # BadZipFile is not one
        raise local_error(url, e) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
            NotImplementedError) as e:
        # a zip was spooled whole first: whatever is wrong with it is its content
        raise refused(url, f"corrupt archive ({type(e).__name__}: {str(e)[:120]})") from None
    finally:
        with contextlib.suppress(Exception):  # ended either way; an error is already raised
            writer.finish()
    return budget.written


class Peekable:
    """A stream whose first bytes can be looked at before it is handed on."""

    def __init__(self, stream: Stream, progress: Optional[Progress] = None) -> None:
        self._stream = stream
        self._head = b""
        self._progress = progress

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            chunk = self._stream.read(n - len(self._head))
            if not chunk:
                break
            if self._progress:
                self._progress.add(len(chunk))
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        """May return fewer bytes than asked (as raw streams do); b"" only at the end."""
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                return head
            head, self._head = self._head[:n], self._head[n:]
            return head
        data = self._stream.read(n)
        if self._progress and data:
            self._progress.add(len(data))
        return data
