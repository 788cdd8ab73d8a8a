"""Builders of real archives for the storage tests, honest and hostile."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from typing import Dict, List, Optional


def tree(root: str) -> Dict[str, bytes]:
    """Every file under ``root`` by relative path (the expected content of a fetch)."""
    out = {}
    for base, _dirs, names in os.walk(root):
        for n in names:
            full = os.path.join(base, n)
            if n.startswith(".tfserverless"):
                continue
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


def tar_of(root: str, *, prefix: str = "", mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for rel, data in sorted(tree(root).items()):
            info = tarfile.TarInfo(os.path.join(prefix, rel))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_of(root: str, *, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in sorted(tree(root).items()):
            zf.writestr(os.path.join(prefix, rel), data)
    return buf.getvalue()


def versioned_tar(root: str, versions: List[int], name: str = "mnist") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for v in versions:
            for rel, data in sorted(tree(root).items()):
                info = tarfile.TarInfo(f"{name}/{v}/{rel}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hostile_tar(kind: str, root: str) -> bytes:
    """A model archive with one poisoned member of the given kind."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel, data in sorted(tree(root).items()):
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil: Optional[tarfile.TarInfo] = None
        payload = b"pwned"
        if kind == "dotdot":
            evil = tarfile.TarInfo("../../escaped.txt")
        elif kind == "absolute":
            evil = tarfile.TarInfo("/tmp/tfs-absolute-escape.txt")
        elif kind == "symlink":
            evil = tarfile.TarInfo("variables/link")
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "symlink_up":
            evil = tarfile.TarInfo("variables/link")
            evil.type, evil.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        elif kind == "hardlink":
            evil = tarfile.TarInfo("hard")
            evil.type, evil.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "device":
            evil = tarfile.TarInfo("dev")
            evil.type, evil.devmajor, evil.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            evil = tarfile.TarInfo("fifo")
            evil.type = tarfile.FIFOTYPE
        assert evil is not None, kind
        if evil.isfile():
            evil.size = len(payload)
            tar.addfile(evil, io.BytesIO(payload))
        else:
            tar.addfile(evil)
    return buf.getvalue()


def bomb_tar(size: int) -> bytes:
    """A small .tar.gz that expands to ``size`` bytes of zeros."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("saved_model.pb")
        info.size = size
        tar.addfile(info, _Zeros(size))
    return buf.getvalue()


def bomb_zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("saved_model.pb", "w") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(b"\0" * n)
            left -= n
    return buf.getvalue()


def many_members_tar(n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def hostile_zip(name: str, root: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in sorted(tree(root).items()):
            zf.writestr(rel, data)
        zf.writestr(name, b"pwned")
    return buf.getvalue()


def symlink_zip(root: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in sorted(tree(root).items()):
            zf.writestr(rel, data)
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = b"\0" * n
        self.left -= n
        return n
