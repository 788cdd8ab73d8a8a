"""One entry of a ``map<string, ArrayProto|TensorProto>``: EAS's inputs and outputs and TF
Serving's inputs and outputs are all such maps, read here by one reader whatever the array
message's layout."""

from __future__ import annotations

from typing import Tuple

from .dtypes import Layout
from .eas_array import WireArray
from .wire import delimited, utf8

_ENTRY = {0x0A: "a map entry", 0x12: "a map entry"}  # key = 1, value = 2


def read_entry(buf: memoryview, pos: int, end: int, layout: Layout, what: str) -> Tuple[str, WireArray]:
    """One ``map<string, ArrayProto|TensorProto>`` entry (key = 1, value = 2) as protobuf reads
    it: the last key wins, every occurrence of the value is a part merged into one array
    (``what``: the key, as a refusal names it)."""
    name = ""
    arr = WireArray(buf, layout)
    for key, start, stop in delimited(buf, pos, end, _ENTRY):
        if key == 0x0A:
            name = utf8(buf, start, stop, what)
        else:
            arr.add_part(start, stop)
    return name, arr
