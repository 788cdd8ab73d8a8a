"""Fast lane: WriteBehind writes in order on its own thread, raises a write's error in the
caller, and closes every file whatever happened."""

from __future__ import annotations

import errno
import io
from typing import Any, List

import pytest

from tfserverless.storage.writer import WriteBehind


class Full(io.BytesIO):
    """A file whose second write finds the disk full."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        if self.writes == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)

    def close(self) -> None:
        self.closed_value = self.getvalue()
        super().close()


def test_chunks_land_in_order_and_files_close(tmp_path: Any) -> None:
    w = WriteBehind(depth=2)
    files = [open(tmp_path / f"f{i}", "wb") for i in range(3)]  # noqa: SIM115
    for n in range(50):
        for i, f in enumerate(files):
            w.write(f, bytes([i, n]))
    for f in files:
        w.close(f)
    w.finish()
    w.finish()  # idempotent
    for i, f in enumerate(files):
        assert f.closed
        assert (tmp_path / f"f{i}").read_bytes() == b"".join(bytes([i, n]) for n in range(50))


def test_a_write_error_is_raised_in_the_caller_and_files_still_close() -> None:
    w = WriteBehind(depth=1)
    full, other = Full(), Full()
    seen: List[BaseException] = []
    try:
        for _ in range(100):
            w.write(full, b"x" * 10)
        w.drain()
    except OSError as e:
        seen.append(e)
    assert seen and seen[0].errno == errno.ENOSPC
    w.close(full)
    w.close(other)
    with pytest.raises(OSError):
        w.finish()
    assert full.closed and other.closed
    assert full.writes == 2  # nothing more was written after the error
