"""Protobuf wire primitives, by hand: varints (vectorised with numpy), keys, fields, skipping.

The request path depends on no protobuf runtime version (each processor pins its own), so the
messages every protocol needs (EAS ``PredictRequest``, TF Serving's ``PredictionLog``) are read
and written with these.
"""

from __future__ import annotations

from typing import Iterator, List, Mapping, NamedTuple, Tuple, Union

import numpy as np

from ..errors import BadRequest

Buffer = Union[bytes, bytearray, memoryview]


_EMPTY_U64 = np.zeros(0, dtype=np.uint64)


class Malformed(BadRequest):
    def __init__(self, what: str) -> None:
        self.what = what  # the fault alone, for readers of other messages (saved_model.pb)
        super().__init__(
            f"malformed protobuf body: {what}; expected a serialized PredictRequest "
            "(proto/predict.proto)"
        )


def read_varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    if pos < end and buf[pos] < 0x80:  # tags and short lengths: the common case
        return buf[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise Malformed("varint longer than 10 bytes")


def read_key(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    """A field's key (tag): as protobuf, a varint of at most 5 bytes and 32 bits, with a field
    number above 0."""
    if pos < end and 8 <= buf[pos] < 0x80:  # one byte, fields 1..15: the common case
        return buf[pos], pos + 1
    key, after = read_varint(buf, pos, end)
    if key >> 3 == 0:
        raise Malformed("field number 0")
    if key > 0xFFFFFFFF or after - pos > 5:
        raise Malformed("field key over 32 bits or 5 bytes")
    return key, after


BLOCK = 1 << 15  # varints are decoded this many bytes at a time: temporaries stay ~1 MiB


def varint_blocks(buf: Buffer, start: int, end: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Split ``buf[start:end]`` into blocks of whole varints, at most ``BLOCK`` bytes each:
    ``(bytes as uint8, index of each varint's last byte)``.  Truncated or overlong varints
    (as protobuf: more than 10 bytes) are malformed."""
    pos = start
    while pos < end:
        stop = min(end, pos + BLOCK)
        b = np.frombuffer(buf, np.uint8, stop - pos, pos)
        ends = np.flatnonzero(b < 0x80)
        if ends.size == 0:
            raise Malformed("truncated varint" if stop == end else "varint longer than 10 bytes")
        used = int(ends[-1]) + 1
        if stop == end and used != stop - pos:
            raise Malformed("truncated varint")
        if int(ends[0]) >= 10 or (ends.size > 1 and int((ends[1:] - ends[:-1]).max()) > 10):
            raise Malformed("varint longer than 10 bytes")
        yield b[:used], ends
        pos += used


def assemble(b: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The uint64 values of a block of whole varints (``varint_blocks``)."""
    if ends.size == b.size:  # every value fits in one byte
        return b.astype(np.uint64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    shifts = (np.arange(b.size, dtype=np.int64) - np.repeat(starts, ends - starts + 1)) * 7
    parts = (b & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


SMALL = 24  # below this many bytes a plain loop beats numpy's per-call overhead (shapes, scalars)


def small_varints(buf: memoryview, start: int, end: int) -> List[int]:
    """The varints of a short run, in Python (validated as ``read_varint`` does)."""
    out: List[int] = []
    while start < end:
        v, start = read_varint(buf, start, end)
        out.append(v)
    return out


def count_varints(buf: memoryview, start: int, end: int) -> int:
    """How many varints ``buf[start:end]`` holds (validating them), without decoding."""
    if end - start <= SMALL:
        return len(small_varints(buf, start, end))
    return sum(int(ends.size) for _, ends in varint_blocks(buf, start, end))


def decode_varints(data: Buffer) -> Tuple[np.ndarray, int]:
    """Split and assemble a run of varints without a Python loop per value.

    Returns ``(values as uint64, bytes consumed)``; truncated or overlong varints are malformed.
    """
    if len(data) <= SMALL:
        mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        return np.array(small_varints(mv, 0, len(mv)), dtype=np.uint64), len(data)
    blocks = [assemble(b, ends) for b, ends in varint_blocks(data, 0, len(data))]
    if not blocks:
        return _EMPTY_U64, 0
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), len(data)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]



def encode_varints(values: np.ndarray) -> bytes:
    """Varint-encode integers (negative ones as 10-byte two's complement), vectorised."""
    u = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    if u.size == 0:
        return b""
    if u.size <= 4:
        return b"".join(varint_bytes(int(v)) for v in u.tolist())
    if bool((u < 0x80).all()):
        return u.astype(np.uint8).tobytes()
    nbytes = np.ones(u.shape, dtype=np.int64)
    for k in range(1, 10):
        nbytes += u >= np.uint64(1 << (7 * k))
    groups = np.empty((u.size, 10), dtype=np.uint8)
    for k in range(10):
        cont = (nbytes > k + 1).astype(np.uint8) << np.uint8(7)
        groups[:, k] = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8) | cont
    keep = np.arange(10) < nbytes[:, None]
    return groups[keep].tobytes()


def varint_bytes(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    n &= 0xFFFFFFFFFFFFFFFF
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def skip_field(buf: memoryview, pos: int, end: int, wire: int) -> int:
    if wire == 0:
        return read_varint(buf, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = read_varint(buf, pos, end)
        pos += n
    else:
        raise Malformed(f"unsupported wire type {wire}")
    if pos > end:
        raise Malformed("field runs past the end of its message")
    return pos


def view(body: Buffer) -> memoryview:
    """``body`` as a flat byte view (no copy)."""
    return memoryview(body).cast("B") if not isinstance(body, memoryview) else body.cast("B")


def delimited(buf: memoryview, pos: int, end: int,
              names: Mapping[int, str]) -> Iterator[Tuple[int, int, int]]:
    """The length-delimited fields of ``buf[pos:end]`` whose key is in ``names``, in order, as
    (key, start, stop) of each payload; every other field skipped as protobuf skips it
    (``names``: each key's field as a refusal names it)."""
    while pos < end:
        key, pos = read_key(buf, pos, end)
        what = names.get(key)
        if what is None:
            pos = skip_field(buf, pos, end, key & 7)
            continue
        start, pos = span(buf, pos, end, what)
        yield key, start, pos


def span(buf: memoryview, pos: int, end: int, what: str = "field") -> Tuple[int, int]:
    """Where the payload of the length-delimited field whose length starts at ``pos`` begins
    and ends (``what``: the field, as a refusal names it)."""
    n, pos = read_varint(buf, pos, end)
    if pos + n > end:
        raise Malformed(f"{what} runs past the end of its message")
    return pos, pos + n


def utf8(buf: memoryview, start: int, stop: int, what: str) -> str:
    """A string field: UTF-8, as protobuf requires of proto3 strings."""
    try:
        return bytes(buf[start:stop]).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"{what} is not valid UTF-8") from None


class Field(NamedTuple):
    """One field of a message, as ``iter_fields`` reads it: its number, its wire type, and its
    value (an int for varint and fixed-width fields, the payload of a length-delimited one).
    The accessors say which kind the caller expects; any other wire type is ``Malformed``, a
    400 (never a TypeError out of a cast)."""

    number: int
    wire: int
    value: Union[int, memoryview]

    def data(self) -> memoryview:
        """The payload of a length-delimited field: a message, a string or packed values."""
        if isinstance(self.value, memoryview):
            return self.value
        raise self._wrong("length-delimited (2)")

    def text(self) -> str:
        """A string field, UTF-8 (anything else replaced)."""
        return bytes(self.data()).decode("utf-8", "replace")

    def varint(self) -> int:
        """A varint field's value (uint64: negatives as two's complement)."""
        if self.wire == 0 and isinstance(self.value, int):
            return self.value
        raise self._wrong("varint (0)")

    def varints(self) -> np.ndarray:
        """A repeated varint field's values in this occurrence (uint64), packed or not."""
        if isinstance(self.value, memoryview):
            return decode_varints(self.value)[0]
        if self.wire != 0:
            raise self._wrong("varint (0) or length-delimited (2)")
        return np.array([self.value], np.uint64)

    def fixed(self, dtype: str) -> np.ndarray:
        """A repeated fixed-width field's values in this occurrence (``dtype``: little-endian,
        4 or 8 bytes), packed or not."""
        dt = np.dtype(dtype)
        if isinstance(self.value, memoryview):
            if len(self.value) % dt.itemsize:
                raise Malformed(f"field {self.number} of {len(self.value)} bytes packs no whole "
                                f"{dt.itemsize}-byte values")
            return np.frombuffer(self.value, dt)
        wire = {4: 5, 8: 1}[dt.itemsize]
        if self.wire != wire:
            raise self._wrong(f"length-delimited (2) or fixed {dt.itemsize * 8}-bit ({wire})")
        return np.frombuffer(self.value.to_bytes(dt.itemsize, "little"), dt)

    def _wrong(self, expected: str) -> Malformed:
        return Malformed(f"field {self.number} has wire type {self.wire}; expected {expected}")


def iter_fields(data: Buffer) -> Iterator[Field]:
    """Each field of a message, in order.  For cold paths (warm-up files, saved_model.pb), not
    traffic; truncated fields and unsupported wire types are ``Malformed``."""
    buf = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_key(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos, end)
            yield Field(field, wire, value)
        elif wire == 2:
            n, pos = read_varint(buf, pos, end)
            if pos + n > end:
                raise Malformed("field runs past the end of its message")
            yield Field(field, wire, buf[pos:pos + n])
            pos += n
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise Malformed("field runs past the end of its message")
            yield Field(field, wire, int.from_bytes(bytes(buf[pos:pos + width]), "little"))
            pos += width
        else:
            raise Malformed(f"unsupported wire type {wire}")


def tagged(field: int, payload: bytes) -> bytes:
    return varint_bytes(field << 3 | 2) + varint_bytes(len(payload)) + payload
