"""What the gRPC message codecs share on top of ``wire``: reading a message by a table of
field handlers, naming the message a malformed body was meant to be, and writing the few
scalar and nested fields their replies hold.  Imports no protobuf runtime.

A handler table maps a field's key (``number << 3 | wire type``) to a function reading its
value into a target and returning where the next field starts; a key not in the table is
skipped, as protobuf skips unknown fields (a known number with another wire type included).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, Sequence, Tuple, Union

import numpy as np

from ..errors import BadRequest
from .wire import (
    Buffer,
    Malformed,
    encode_varints,
    read_key,
    skip_field,
    span,
    tagged,
    utf8,
    varint_bytes,
    view,
)

Handler = Callable[[Any, memoryview, int, int], int]


def read_message(buf: memoryview, pos: int, end: int, table: Dict[int, Handler], target: Any) -> None:
    """Each field of ``buf[pos:end]`` through ``table`` into ``target``; others skipped."""
    while pos < end:
        key, pos = read_key(buf, pos, end)
        handler = table.get(key)
        pos = skip_field(buf, pos, end, key & 7) if handler is None else handler(target, buf, pos, end)


def string_reader(slot: Union[int, str], what: str) -> Handler:
    """A handler storing a string field in ``target[slot]`` (an int) or as its attribute
    ``slot`` (a name); the last occurrence wins, as protobuf's."""

    def read(target: Any, buf: memoryview, pos: int, end: int) -> int:
        start, stop = span(buf, pos, end)
        value = utf8(buf, start, stop, what)
        if isinstance(slot, int):
            target[slot] = value
        else:
            setattr(target, slot, value)
        return stop

    return read


def read_strings(body: Buffer, fields: Sequence[str], message: str) -> Tuple[str, ...]:
    """The string fields 1, 2, ... of a small request message (``fields`` names them), each
    '' when absent; a malformed body is a 400 naming ``message``."""
    out = [""] * len(fields)
    table = {(i + 1) << 3 | 2: string_reader(i, f) for i, f in enumerate(fields)}
    with reading(message):
        buf = view(body)
        read_message(buf, 0, len(buf), table, out)
    return tuple(out)


@contextlib.contextmanager
def reading(message: str) -> Iterator[None]:
    """Malformed protobuf met inside is a 400 naming the message the body should have been
    (``wire.Malformed`` names the EAS PredictRequest)."""
    try:
        yield
    except Malformed as e:
        raise BadRequest(f"malformed protobuf body: {e.what}; expected a serialized "
                         f"{message}") from None


# --- writing (proto3: a scalar at its default value is not written) --------------------------


def string_field(number: int, value: str) -> bytes:
    return tagged(number, value.encode("utf-8")) if value else b""


def strings_field(number: int, values: Iterable[str]) -> bytes:
    return b"".join(tagged(number, v.encode("utf-8")) for v in values)


def uint_field(number: int, value: int) -> bytes:
    """A varint field (bool, enum, int, uint: negatives as 10-byte two's complement)."""
    return varint_bytes(number << 3) + varint_bytes(int(value)) if value else b""


def ints_field(number: int, values: Sequence[int]) -> bytes:
    """A packed repeated int64 field (shapes, dims)."""
    return tagged(number, encode_varints(np.asarray(values, np.int64))) if len(values) else b""


def message_field(number: int, payload: bytes) -> bytes:
    """A nested message, written even when empty (it is then present, not absent)."""
    return tagged(number, payload)


__all__ = ["Handler", "ints_field", "message_field", "read_message", "read_strings", "reading",
           "string_field", "string_reader", "strings_field", "uint_field"]
