"""The model cache: manifests verified on reuse, and archives remembered as refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time

from ..errors import ModelUnavailable
from .base import redact

MANIFEST = ".tfserverless-manifest.json"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_complete(path: str) -> bool:
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


def write_manifest(path: str, url: str, version: str) -> None:
    files = {}
    for root, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as f:
        json.dump({"url": redact(url), "version": version, "files": files,
                   "fetched_at": time.time()}, f)


def refused_before(marker: str) -> None:
    """This version of the object was refused already: say so again without downloading it."""
    try:
        with open(marker, encoding="utf-8") as f:
            message = f.read().strip()
    except OSError:
        return
    raise ModelUnavailable(f"{message} (this version was refused before; it is fetched again "
                           "once the object changes)", retry_after=60)


def remember_refusal(marker: str, message: str) -> None:
    with contextlib.suppress(OSError):
        with open(marker + ".tmp", "w", encoding="utf-8") as f:
            f.write(message)
        os.replace(marker + ".tmp", marker)
