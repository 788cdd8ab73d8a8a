"""Writes behind: an archive's members written to disk on a thread of their own, in order, at
most ``depth`` chunks behind the extractor, so the disk's time overlaps the inflating (both
release the GIL).  Extracting a 1 GiB ``.tar.gz`` spent 2.8 s of its 10.9 s in ``write``.

Every step on a file happens on that thread, its opening too: an archive that names a member
twice rewrites the file from the start after the first copy's last chunk, as a synchronous
extraction would (opened by the caller, the second copy truncated the file under the first
copy's queued chunks)."""

from __future__ import annotations

import queue
import threading
from typing import IO, Optional, Tuple, cast

OPEN, WRITE, CLOSE, STOP = range(4)
Item = Tuple[int, object]


class WriteBehind:
    """``begin(path)``, ``write(chunk)``..., ``end()`` per file, queued; ``drain`` waits for
    them; ``finish`` waits and ends the thread.  An error in the thread (ENOSPC) is raised to
    the caller at its next call; the file is closed whatever happened."""

    def __init__(self, depth: int = 8) -> None:
        self._q: queue.Queue[Item] = queue.Queue(depth)
        self._error: Optional[BaseException] = None
        self._file: Optional[IO[bytes]] = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="model-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            op, arg = self._q.get()
            try:
                if op == STOP:
                    return
                self._step(op, arg)
            except BaseException as e:  # raised in the caller (``_check``)
                if self._error is None:
                    self._error = e
            finally:
                self._q.task_done()

    def _step(self, op: int, arg: object) -> None:
        if op == CLOSE or (op == OPEN and self._file is not None):
            f, self._file = self._file, None
            if f is not None:
                f.close()
        if op == OPEN and self._error is None:
            self._file = open(str(arg), "wb")  # noqa: SIM115  (closed by CLOSE, or the next OPEN)
        elif op == WRITE and self._error is None and self._file is not None:
            self._file.write(cast(bytes, arg))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def begin(self, path: str) -> None:
        self._check()
        self._q.put((OPEN, path))

    def write(self, data: bytes) -> None:
        self._check()
        self._q.put((WRITE, data))

    def end(self) -> None:
        self._q.put((CLOSE, None))

    def drain(self) -> None:
        """Until everything queued is on disk (a link copies a file written before it)."""
        self._q.join()
        self._check()

    def finish(self) -> None:
        """Every write done, the file closed, the thread ended; the first error raised.
        Idempotent."""
        if not self._done:
            self._done = True
            self._q.put((CLOSE, None))
            self._q.put((STOP, None))
            self._thread.join()
        self._check()
