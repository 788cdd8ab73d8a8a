"""A process a test starts and ends: in a session of its own, its output in a file."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


class Logged:
    """A process in a session of its own, its output in ``log_path``; ``stop`` ends it and
    its children."""

    proc: subprocess.Popen[bytes]
    log_path: str
    _log: Any

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
