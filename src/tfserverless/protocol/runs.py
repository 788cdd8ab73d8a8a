"""Runs of unpacked repeated fields (protobuf's non-packed encoding of a repeated number):
found with numpy in windows that grow from small, so an adversary's lone elements stay cheap
and a long run is read in O(its length); EAS's ArrayProto, TF's TensorProto and V2's
InferTensorContents are read with these."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .wire import BLOCK, Malformed, read_varint


def single(buf: memoryview, pos: int, end: int, key: int, after: int) -> bool:
    """Whether the element whose value starts at ``pos`` stands alone: its tag was not the
    canonical one byte, or the next field has another tag.  Lone elements (an adversary's
    favourite: each followed by an unknown field) are read in Python; only a real run of equal
    tags is worth numpy's per-call cost."""
    return key > 0x7F or buf[pos - 1] != key or after >= end or buf[after] != key


def fixed_run(buf: memoryview, pos: int, end: int, key: int, width: int) -> Tuple[int, int]:
    """Unpacked fixed-width elements after a one-byte tag at ``pos - 1``: how many follow with
    the same tag, and where the run ends.  Windows grow from small, so a run of one costs
    little and a long run is found in O(its length)."""
    start = pos - 1
    stride = width + 1
    count, window = 0, 16
    while True:
        avail = (end - start) // stride - count
        n = min(avail, window)
        if n <= 0:
            break
        rows = np.frombuffer(buf, np.uint8, n * stride, start + count * stride).reshape(n, stride)
        ok = rows[:, 0] == key
        good = n if bool(ok.all()) else int(np.argmin(ok))
        count += good
        if good < n:
            break
        window = min(window * 4, BLOCK)
    if count == 0:
        raise Malformed(f"field {key >> 3} runs past its message")
    return count, start + count * stride


def varint_run(buf: memoryview, pos: int, end: int, key: int) -> Tuple[int, int]:
    """Unpacked varint elements after a one-byte tag at ``pos - 1``: how many (tag, value)
    pairs follow with that tag, and where the run ends (values validated)."""
    p = pos - 1
    count, window = 0, 32
    while p < end:
        stop = min(end, p + window)
        b = np.frombuffer(buf, np.uint8, stop - p, p)
        ends = np.flatnonzero(b < 0x80)
        pairs = ends.size // 2
        if pairs == 0:
            break
        tag_at = np.empty(pairs, dtype=np.int64)  # where each pair's tag starts
        tag_at[0] = 0
        tag_at[1:] = ends[1 : 2 * pairs - 1 : 2] + 1
        ok = b[tag_at] == key
        good = pairs if bool(ok.all()) else int(np.argmin(ok))
        if good and int((ends[1 : 2 * good : 2] - ends[0 : 2 * good : 2]).max()) > 10:
            raise Malformed("varint longer than 10 bytes")
        count += good
        p += int(ends[2 * good - 1]) + 1 if good else 0
        if good < pairs or stop == end:
            break
        window = min(window * 4, BLOCK)
    if count == 0:  # the value after the tag is truncated or overlong: say which
        return 1, read_varint(buf, pos, end)[1]
    return count, p
