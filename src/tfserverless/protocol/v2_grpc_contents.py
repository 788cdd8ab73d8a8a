"""The V2 gRPC ``InferTensorContents`` message (typed tensor values) off the wire and onto it.

Read as the EAS ``ArrayProto`` is (``eas_array``): ``scan`` validates every field as protobuf
would and counts each field's values; ``values`` then allocates one array for the field the
datatype uses and decodes into it in bounded blocks.  Linear in the body for every layout
(packed, unpacked runs, values interleaved with unknown fields, a message split in parts that
protobuf merges), with no Python loop per numeric value and no copy of a lone packed float
field (a view of the body).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np

from .runs import fixed_run, single, varint_run
from .wire import (
    SMALL,
    Malformed,
    assemble,
    count_varints,
    encode_varints,
    read_key,
    read_varint,
    skip_field,
    small_varints,
    tagged,
    varint_blocks,
)


class Kind(NamedTuple):
    name: str  # the field's name in grpc_service.proto
    wire: int  # an element's wire type unpacked: 0 varint, 5/1 fixed 32/64-bit, 2 bytes
    width: int  # bytes of a fixed-width element (0: varint or bytes)
    values: str  # numpy dtype of the elements as protobuf types them ("object": bytes)


#: InferTensorContents' fields
CONTENTS: Dict[int, Kind] = {
    1: Kind("bool_contents", 0, 0, "bool"),
    2: Kind("int_contents", 0, 0, "int32"),
    3: Kind("int64_contents", 0, 0, "int64"),
    4: Kind("uint_contents", 0, 0, "uint32"),
    5: Kind("uint64_contents", 0, 0, "uint64"),
    6: Kind("fp32_contents", 5, 4, "<f4"),
    7: Kind("fp64_contents", 1, 8, "<f8"),
    8: Kind("bytes_contents", 2, 0, "object"),
}
#: the field carrying each V2 datatype's values (FP16 and BF16 have none: raw contents only)
FIELD_OF: Dict[str, int] = {
    "BOOL": 1, "INT8": 2, "INT16": 2, "INT32": 2, "INT64": 3, "UINT8": 4, "UINT16": 4,
    "UINT32": 4, "UINT64": 5, "FP32": 6, "FP64": 7, "BYTES": 8,
}
MAX_PARTS = 64  # occurrences of one input's contents that protobuf would merge

# A varint as protobuf reads it into the field's type (int32/uint32: the low 32 bits).
_FROM_VARINT: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bool": lambda u: u != 0,
    "int32": lambda u: u.view(np.int64).astype(np.int32),
    "int64": lambda u: u.view(np.int64),
    "uint32": lambda u: u.astype(np.uint32),
    "uint64": lambda u: u,
}
#: the same for one value, in Python (a lone element: numpy's call costs more than it)
_SCALAR: Dict[str, Callable[[int], Any]] = {
    "bool": lambda v: v != 0,
    "int32": lambda v: ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000,
    "int64": lambda v: (v ^ 1 << 63) - (1 << 63),
    "uint32": lambda v: v & 0xFFFFFFFF,
    "uint64": lambda v: v,
}


def _varints(buf: memoryview, start: int, stop: int) -> Iterator[np.ndarray]:
    """The uint64 values of a run of varints, in blocks (a short run read in Python)."""
    if stop - start <= SMALL:
        yield np.array(small_varints(buf, start, stop), np.uint64)
        return
    for b, ends in varint_blocks(buf, start, stop):
        yield assemble(b, ends)


class Contents:
    """One input's ``contents``, as it came off the wire (its parts: offsets into the body)."""

    __slots__ = ("_buf", "_counts", "_parts", "_pieces", "_view")

    def __init__(self, buf: memoryview) -> None:
        self._buf = buf
        self._parts: List[Tuple[int, int]] = []
        self._counts: Dict[int, int] = {}
        self._pieces: Dict[int, int] = {}
        self._view: Dict[int, int] = {}  # field -> offset of its values when one packed piece

    def add_part(self, start: int, end: int) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise Malformed(f"one input's contents split into more than {MAX_PARTS} parts")
        self._parts.append((start, end))

    def count(self, field: int) -> int:
        return self._counts.get(field, 0)

    def fields_present(self) -> List[int]:
        return sorted(f for f, n in self._counts.items() if n)

    def scan(self, max_strings: int) -> None:
        """Pass 1.  Stops once bytes_contents holds more than ``max_strings`` elements (then
        counted as ``max_strings + 1``): a request's limit, refused by the caller."""
        buf, room = self._buf, max_strings
        for pos, end in self._parts:
            while pos < end:
                key, pos = read_key(buf, pos, end)
                field, wire = key >> 3, key & 7
                kind = CONTENTS.get(field)
                at, n = pos, -1
                if kind is None:
                    pass
                elif kind.wire == 2:
                    if wire == 2:
                        n, pos = 1, _after(buf, pos, end, kind)
                        if room == 0:
                            self._counts[field] = self._counts.get(field, 0) + 1
                            return
                        room -= 1
                elif wire == 2:  # packed
                    size, at = read_varint(buf, pos, end)
                    pos = at + size
                    if pos > end:
                        raise Malformed(f"packed {kind.name} runs past its message")
                    if kind.width and size % kind.width:
                        raise Malformed(f"packed {kind.name} of {size} bytes holds no whole "
                                        f"{kind.width}-byte values")
                    n = size // kind.width if kind.width else count_varints(buf, at, pos)
                elif wire == kind.wire:
                    n, pos = _unpacked(buf, pos, end, key, kind)
                if n < 0:
                    pos = skip_field(buf, pos, end, wire)
                elif n:
                    pieces = self._pieces.get(field, 0)
                    self._pieces[field] = pieces + 1
                    if pieces == 0 and wire == 2:
                        self._view[field] = at
                    self._counts[field] = self._counts.get(field, 0) + n

    def values(self, field: int) -> np.ndarray:
        """Pass 2: every value of ``field`` in wire order, typed as ``CONTENTS`` says."""
        kind = CONTENTS[field]
        n = self.count(field)
        at = self._view.get(field)
        if kind.width and self._pieces.get(field) == 1 and at is not None:
            return np.frombuffer(self._buf, kind.values, n, at)  # one packed piece: a view
        out = np.empty(n, dtype=kind.values)
        if n:
            self._fill(field, kind, out)
        return out

    def _fill(self, field: int, kind: Kind, out: np.ndarray) -> None:
        buf, i = self._buf, 0
        conv = _FROM_VARINT.get(kind.values)
        for pos, end in self._parts:
            while pos < end:
                key, pos = read_key(buf, pos, end)
                f, wire = key >> 3, key & 7
                if f != field or wire not in (2, kind.wire):
                    pos = skip_field(buf, pos, end, wire)
                elif kind.wire == 2:  # one bytes element
                    size, pos = read_varint(buf, pos, end)
                    out[i] = bytes(buf[pos:pos + size])
                    pos, i = pos + size, i + 1
                elif wire == 2:  # packed
                    size, pos = read_varint(buf, pos, end)
                    if conv is None:
                        n = size // kind.width
                        out[i:i + n] = np.frombuffer(buf, kind.values, n, pos)
                        i += n
                    else:
                        for vals in _varints(buf, pos, pos + size):
                            out[i:i + vals.size] = conv(vals)
                            i += vals.size
                    pos += size
                elif conv is None:  # unpacked fixed-width: a lone one, or a strided run
                    n, stop = _unpacked(buf, pos, end, key, kind)
                    out[i:i + n] = np.ndarray((n,), kind.values, buf, pos, (kind.width + 1,))
                    pos, i = stop, i + n
                else:  # unpacked varints: a lone one, or a run of (tag, value) pairs
                    n, stop = _unpacked(buf, pos, end, key, kind)
                    if n == 1:  # its tag may be longer than a byte: read the value alone
                        out[i] = _SCALAR[kind.values](read_varint(buf, pos, end)[0])
                    else:
                        j, odd = i, 0  # odd: an odd count of varints went before this block
                        for block in _varints(buf, pos - 1, stop):
                            vals = conv(block[1 - odd::2])  # the values, after each tag
                            out[j:j + vals.size] = vals
                            j, odd = j + vals.size, (odd + block.size) % 2
                    pos, i = stop, i + n


def encode_contents(flat: np.ndarray, datatype: str) -> bytes:
    """An ``InferTensorContents`` holding ``flat`` (a 1-D array of ``datatype``, which has a
    field: ``FIELD_OF``) in its field, packed."""
    field = FIELD_OF[datatype]
    kind = CONTENTS[field]
    if kind.wire == 2:  # bytes elements, one field each
        return b"".join(tagged(field, v if isinstance(v, bytes) else str(v).encode("utf-8"))
                        for v in flat)
    if not flat.size:
        return b""
    if kind.width:
        payload = np.ascontiguousarray(flat, dtype=kind.values).tobytes()
    elif kind.values == "bool":
        payload = flat.astype(np.uint8).tobytes()  # 0 and 1: one-byte varints
    else:
        payload = encode_varints(flat)
    return tagged(field, payload)


def _after(buf: memoryview, pos: int, end: int, kind: Kind) -> int:
    size, pos = read_varint(buf, pos, end)
    if pos + size > end:
        raise Malformed(f"{kind.name} runs past its message")
    return pos + size


def _unpacked(buf: memoryview, pos: int, end: int, key: int, kind: Kind) -> Tuple[int, int]:
    """How many unpacked elements start at ``pos`` (after a tag ``key``), and where they end."""
    if kind.width:
        if single(buf, pos, end, key, pos + kind.width):
            if pos + kind.width > end:
                raise Malformed(f"{kind.name} runs past its message")
            return 1, pos + kind.width
        return fixed_run(buf, pos, end, key, kind.width)
    after = read_varint(buf, pos, end)[1]
    if single(buf, pos, end, key, after):
        return 1, after
    return varint_run(buf, pos, end, key)


__all__ = ["CONTENTS", "FIELD_OF", "MAX_PARTS", "Contents", "Kind", "encode_contents"]
