"""Writes behind: an archive's members written to disk on a thread of their own, in order, at
most ``depth`` chunks behind the extractor, so the disk's time overlaps the inflating (both
release the GIL).  Extracting a 1 GiB ``.tar.gz`` spent 2.8 s of its 10.9 s in ``write``."""

from __future__ import annotations

import queue
import threading
from typing import IO, Optional, Tuple

Item = Optional[Tuple[IO[bytes], Optional[bytes]]]  # (file, chunk), (file, None): close it


class WriteBehind:
    """``write(f, chunk)`` and ``close(f)`` queue; ``drain`` waits for them; ``finish`` waits
    and ends the thread.  An error in the thread (ENOSPC) is raised to the caller at its next
    call; files are closed whatever happened."""

    def __init__(self, depth: int = 8) -> None:
        self._q: queue.Queue[Item] = queue.Queue(depth)
        self._error: Optional[BaseException] = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="model-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                f, data = item
                if data is None:
                    f.close()
                elif self._error is None:
                    f.write(data)
            except BaseException as e:  # raised in the caller (``_check``)
                if self._error is None:
                    self._error = e
            finally:
                self._q.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, f: IO[bytes], data: bytes) -> None:
        self._check()
        self._q.put((f, data))

    def close(self, f: IO[bytes]) -> None:
        self._q.put((f, None))

    def drain(self) -> None:
        """Until everything queued is on disk (a link copies a file written before it)."""
        self._q.join()
        self._check()

    def finish(self) -> None:
        """Every write done, the thread ended; the first error raised.  Idempotent."""
        if not self._done:
            self._done = True
            self._q.put(None)
            self._thread.join()
        self._check()
