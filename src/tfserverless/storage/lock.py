"""One download and extraction per version across gunicorn workers: a file lock."""

from __future__ import annotations

import os
from typing import Any


class FileLock:
    """An exclusive lock shared by every process on this disk (gunicorn workers)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> FileLock:
        import fcntl  # POSIX only; the function runtimes all are

        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
