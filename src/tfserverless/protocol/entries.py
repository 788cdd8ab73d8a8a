"""One entry of a ``map<string, ArrayProto|TensorProto>``: EAS's inputs and outputs and TF
Serving's inputs and outputs are all such maps, read here by one reader whatever the array
message's layout."""

from __future__ import annotations

from typing import Tuple

from .dtypes import Layout
from .eas_array import WireArray
from .wire import read_key, skip_field, span, utf8


def read_entry(buf: memoryview, pos: int, end: int, layout: Layout, what: str) -> Tuple[str, WireArray]:
    """One ``map<string, ArrayProto|TensorProto>`` entry (key = 1, value = 2) as protobuf reads
    it: the last key wins, every occurrence of the value is a part merged into one array
    (``what``: the key, as a refusal names it)."""
    name = ""
    arr = WireArray(buf, layout)
    while pos < end:
        key, pos = read_key(buf, pos, end)
        if key in (0x0A, 0x12):
            start, stop = span(buf, pos, end, "a map entry")
            if key == 0x0A:
                name = utf8(buf, start, stop, what)
            else:
                arr.add_part(start, stop)
            pos = stop
        else:
            pos = skip_field(buf, pos, end, key & 7)
    return name, arr
