"""Fast lane: WriteBehind opens, writes and closes files in order on its own thread, raises a
write's error in the caller, and leaves no file open whatever happened."""

from __future__ import annotations

import errno
import io
import tarfile
import threading
from typing import Any

import pytest

from tfserverless.storage import archive
from tfserverless.storage.writer import WriteBehind


def test_files_land_in_order(tmp_path: Any) -> None:
    w = WriteBehind(depth=2)
    for i in range(3):
        w.begin(str(tmp_path / f"f{i}"))
        for n in range(50):
            w.write(bytes([i, n]))
        w.end()
    w.finish()
    w.finish()  # idempotent
    for i in range(3):
        assert (tmp_path / f"f{i}").read_bytes() == b"".join(bytes([i, n]) for n in range(50))


def test_a_write_error_is_raised_in_the_caller_and_the_file_closes(tmp_path: Any,
                                                                    monkeypatch: Any) -> None:
    opened = []

    class Full(io.BytesIO):
        writes = 0

        def write(self, data: Any) -> int:
            Full.writes += 1
            if Full.writes == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    def fake_open(path: str, mode: str) -> Full:
        opened.append(Full())
        return opened[-1]

    monkeypatch.setattr("builtins.open", fake_open)
    w = WriteBehind(depth=1)
    with pytest.raises(OSError) as e:
        w.begin("x")
        for _ in range(100):
            w.write(b"x" * 10)
        w.drain()
    assert e.value.errno == errno.ENOSPC
    w.end()
    with pytest.raises(OSError):
        w.finish()
    assert opened and all(f.closed for f in opened)
    assert Full.writes == 2  # nothing more was written after the error


def test_a_member_named_twice_ends_as_its_last_copy(tmp_path: Any, monkeypatch: Any) -> None:
    """The second copy is opened (truncating the file) only after the first copy's last
    chunk is written, however slow the disk: a slowed writer shows the order."""
    slow = threading.Event()
    real = WriteBehind._step

    def step(self: WriteBehind, op: int, arg: object) -> None:
        slow.wait(0.002)
        real(self, op, arg)

    monkeypatch.setattr(WriteBehind, "_step", step)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for data in (b"1" * (5 << 20), b"second"):
            info = tarfile.TarInfo("m/a")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    dest = tmp_path / "out"
    dest.mkdir()
    archive.extract_tar("x.tar", buf, str(dest),  # type: ignore[arg-type]
                        archive.ArchiveLimits(max_bytes=1 << 30, max_members=10))
    assert (dest / "m" / "a").read_bytes() == b"second"


@pytest.mark.parametrize("code,refused,words", [
    (errno.ENOSPC, False, "disk full while extracting"),
    (errno.EDQUOT, False, "disk full while extracting"),
    (errno.ENAMETOOLONG, True, "cannot be written here"),
    (errno.EIO, False, "local I/O error while extracting"),
])
def test_local_errors_by_cause(code: int, refused: bool, words: str) -> None:
    """A full disk or this machine's I/O is retried later; a name the filesystem cannot hold
    is the archive's doing (remembered). Before, all but ENOSPC were a remembered 'corrupt'."""
    err = archive.local_error("s3://b/m.tar.gz", OSError(code, "x"))
    assert isinstance(err, archive.ArchiveRefused) is refused
    assert words in err.message and "\n" not in err.message
