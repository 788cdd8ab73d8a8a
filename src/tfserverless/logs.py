"""Third-party chatter, quieted unless ``LOG_LEVEL=DEBUG`` brings it back.

* TensorFlow's C++ logs: ``TF_CPP_MIN_LOG_LEVEL=2`` before TensorFlow is imported, where the
  environment does not set it (the CPU-feature and MLIR notices);
* TensorFlow's and absl's Python loggers at errors only;
* what TensorFlow >= 2.17 writes to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says (it logs
  through absl before ``absl::InitializeLog``: absl's banner and the oneDNN notice, once per
  library, per worker): ``filter_stderr`` drops those lines on their way out of a server.

gunicorn's and uvicorn's own lines follow ``LOG_LEVEL`` in ``server.options``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from typing import MutableMapping, Optional, Pattern

THIRD_PARTY_LOGGERS = ("tensorflow", "absl")
#: TensorFlow's C++ lines the filter drops: absl's banner, and informational lines
#: ("I0000 00:00:1796456495.365186    8287 port.cc:153] oneDNN custom operations are on...")
NOISE = re.compile(rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called "
                   rb"are written to STDERR|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] )")


def quiet_third_party(level: str, environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Quiet the third-party logs unless ``level`` is DEBUG (True when it did).  Call it
    before TensorFlow is imported: its C++ side reads the variable once."""
    if level == "DEBUG":
        return False
    environ = os.environ if environ is None else environ
    if not environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip():
        environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    return True


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def forward(read_fd: int, write_fd: int, noise: Pattern[bytes] = NOISE) -> None:
    """Copy ``read_fd`` to ``write_fd`` line by line until EOF, without the ``noise`` lines.
    A partial line that cannot be noise goes out at once (no line waits on its newline)."""
    pending = b""
    while True:
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        out = b"".join(ln + b"\n" for ln in lines if not noise.match(ln))
        if pending and pending[:1] not in (b"I", b"W"):
            out, pending = out + pending, b""
        if out:
            _write_all(write_fd, out)
    if pending and not noise.match(pending):
        _write_all(write_fd, pending)


def filter_stderr(noise: Pattern[bytes] = NOISE) -> bool:
    """Send this process's stderr, and that of the children it forks from now on (gunicorn's
    workers inherit the descriptor), through ``forward`` in a thread of this process.  For a
    process that outlives its children (gunicorn's master): a worker that dies mid-import
    still has what it wrote shown.  False when stderr cannot be redirected."""
    sys.stderr.flush()
    try:
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:
        return False
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=forward, args=(read_fd, real, noise),
                              name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:  # at exit: the rest of what the workers wrote, then stderr as it was
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last writer here closes: EOF once the workers are gone
        thread.join(2.0)

    atexit.register(restore)
    return True


__all__ = ["NOISE", "THIRD_PARTY_LOGGERS", "filter_stderr", "forward", "quiet_third_party"]
