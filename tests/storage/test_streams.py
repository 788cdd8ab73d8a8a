"""Fast lane: the gzip inflater behaves the same with every module here (ISA-L's where
installed, zlib's always): whole, multi-member, truncated, corrupt, and a bomb's output
bounded per read."""

from __future__ import annotations

import gzip
import io
import os
from types import ModuleType

import pytest

from tfserverless.storage.base import CHUNK
from tfserverless.storage.streams import INFLATE_ERRORS, Inflate, inflaters

DATA = os.urandom(300_000) + b"w" * 3_000_000


def inflate(blob: bytes, impl: ModuleType, n: int = 10240) -> bytes:
    src = Inflate(io.BytesIO(blob), impl)  # type: ignore[arg-type]
    out = []
    while True:
        piece = src.read(n)
        assert len(piece) <= n
        if not piece:
            return b"".join(out)
        out.append(piece)


@pytest.fixture(params=inflaters(), ids=lambda m: m.__name__)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def test_whole_and_multi_member(impl: ModuleType) -> None:
    assert inflate(gzip.compress(DATA), impl) == DATA
    assert inflate(gzip.compress(DATA) + gzip.compress(b"tail") + b"\0" * 512, impl) == DATA + b"tail"


@pytest.mark.parametrize("cut", [10, 1000, -9, -1])
def test_truncated_is_an_error(impl: ModuleType, cut: int) -> None:
    with pytest.raises(INFLATE_ERRORS):
        inflate(gzip.compress(DATA)[:cut], impl)


def test_a_wrong_checksum_is_an_error(impl: ModuleType) -> None:
    bad = bytearray(gzip.compress(DATA))
    bad[-6] ^= 1  # the CRC-32 in the trailer
    with pytest.raises(INFLATE_ERRORS):
        inflate(bytes(bad), impl)


def test_a_bomb_inflates_at_most_a_chunk_at_a_time(impl: ModuleType) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB from ~64 KB
    src = Inflate(io.BytesIO(bomb), impl)  # type: ignore[arg-type]
    assert len(src.read(1 << 30)) <= CHUNK
    assert src.total <= CHUNK


@pytest.mark.parametrize("tail", [b"garbage!", b"x" * 100, b"\0\0junk"])
def test_junk_after_the_last_member_is_corrupt_not_truncated(impl: ModuleType, tail: bytes) -> None:
    """Corrupt (remembered) rather than truncated (downloaded again at every cold start), with
    either module (ISA-L said truncated for a short tail, zlib corrupt)."""
    with pytest.raises(INFLATE_ERRORS) as e:
        inflate(gzip.compress(DATA) + tail, impl)
    assert "past the end" in str(e.value)
