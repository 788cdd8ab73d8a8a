"""``inference.ModelInferRequest`` off the wire (grpc_service.proto), by hand: every field read
through handler tables, as protobuf reads it (the last scalar wins, map entries replace,
repeated messages add, a singular message's occurrences merge, unknown fields are skipped),
each count bounded before anything grows with it.  Tensor values stay in the body until
``InputTensor.to_numpy``, which checks the count against the shape first.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..errors import BadRequest
from .dtypes import BY_V2, MAX_RANK, MAX_STRINGS, V2_NAMES, DType, check_dims, check_strings
from .grpc_wire import Handler, read_message, string_reader
from .text import quote
from .v2 import LENGTH_PREFIX, MAX_TENSORS, bytes_elements
from .v2_grpc_contents import CONTENTS, FIELD_OF, Contents
from .wire import Buffer, Malformed, count_varints, read_varint, small_varints, span, view

Param = Union[bool, int, float, str, None]  # an InferParameter's value (None: none set)
MAX_PARAMETERS = 1024  # parameter entries in one request, every map's together
_SHM = "shared_memory_region"


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class InputTensor:
    """One ``InferInputTensor``: what the request said of it, and its array on demand (the
    ``Incoming`` that ``feeds_for_signature`` takes)."""

    __slots__ = ("contents", "datatype", "dims", "dtype", "name", "owner", "parameters", "rank_over",
                 "raw")

    def __init__(self, owner: InferRequest) -> None:
        self.owner = owner
        self.name = self.datatype = ""
        self.dims: List[int] = []
        self.rank_over = False  # more dims than MAX_RANK: not kept, refused in to_numpy
        self.parameters: Dict[str, Param] = {}
        self.contents: Optional[Contents] = None  # made at its first part (raw inputs: never)
        self.raw: Optional[memoryview] = None
        self.dtype = 0

    def check(self, raw: Optional[memoryview]) -> DType:
        """The datatype and where the values are, checked before any is read."""
        dt = BY_V2.get(self.datatype)
        if dt is None:
            raise BadRequest(f"input '{self.name}' has datatype {quote(self.datatype)}; expected "
                             f"one of {V2_NAMES}")
        if _SHM in self.parameters:
            raise BadRequest(f"input '{self.name}' is in shared memory, which is not supported; "
                             "expected its data in contents or raw_input_contents")
        if self.contents is not None:
            check_strings(self.name, self.contents.count(8), counted_all=False)
            if raw is not None and self.contents.fields_present():
                raise BadRequest(f"input '{self.name}' has both contents and raw_input_contents; "
                                 "expected its data in one of them")
        self.dtype, self.raw = dt.code, raw
        return dt

    def to_numpy(self, name: str) -> np.ndarray:
        if self.rank_over:  # as check_dims says it
            raise BadRequest(f"input '{name}' has rank over {MAX_RANK}; expected at most {MAX_RANK}")
        count = check_dims(name, self.dims)
        dt = BY_V2[self.datatype]
        arr = self._from_raw(dt, count) if self.raw is not None else self._from_contents(dt, count)
        return arr.reshape(self.dims)

    def _from_raw(self, dt: DType, count: int) -> np.ndarray:
        raw, name, shape = self.raw, self.name, list(self.dims)
        assert raw is not None
        if dt.numpy == "object":
            if count > len(raw) // LENGTH_PREFIX:  # before allocating anything for them
                raise BadRequest(f"input '{name}' has {len(raw)} bytes in raw_input_contents; shape "
                                 f"{shape} of BYTES needs at least {count * LENGTH_PREFIX} (a "
                                 f"{LENGTH_PREFIX}-byte length per element)")
            check_strings(name, count)
            return bytes_elements(raw, count, name)
        item = np.dtype(dt.numpy).newbyteorder("<")
        if len(raw) != count * item.itemsize:
            raise BadRequest(f"input '{name}' has {len(raw)} bytes in raw_input_contents; shape "
                             f"{shape} of {dt.v2} needs {count * item.itemsize}")
        if not count:
            return np.empty(0, dt.numpy)
        if dt.numpy == "bool":
            return np.frombuffer(raw, np.uint8).astype(bool)  # any non-zero byte is true
        return np.frombuffer(raw, item).astype(dt.numpy, copy=False)  # a view where native

    def _from_contents(self, dt: DType, count: int) -> np.ndarray:
        name, shape = self.name, list(self.dims)
        field = FIELD_OF.get(dt.v2)
        where = "raw_input_contents" if field is None else CONTENTS[field].name
        contents = self.contents
        present = contents.fields_present() if contents is not None else []
        if contents is None or not present:
            if count:
                raise BadRequest(f"input '{name}' has neither contents nor raw_input_contents; "
                                 f"expected its {count} values in {where}")
            return np.empty(0, dt.numpy)
        if field is None:
            raise BadRequest(f"input '{name}' of datatype {dt.v2} has values in "
                             f"{CONTENTS[present[0]].name}; expected them in {where} "
                             f"(InferTensorContents has no field for {dt.v2})")
        got = contents.count(field)
        if got != count:
            raise BadRequest(f"input '{name}' has {got} values in {where} but shape {shape} "
                             f"needs {count}")
        for other in present:
            if other != field:
                raise BadRequest(f"input '{name}' of datatype {dt.v2} carries values in "
                                 f"{CONTENTS[other].name}; expected them in {where}")
        values = contents.values(field)
        target = np.dtype(dt.numpy)
        if target.kind in "iu" and values.size and not np.can_cast(values.dtype, target):
            info = np.iinfo(target)  # int_contents and uint_contents carry narrower types too
            if values.min() < info.min or values.max() > info.max:
                raise BadRequest(f"input '{name}' has values out of {dt.name}'s range "
                                 f"[{info.min}, {info.max}]")
        return values if target.kind == "O" else values.astype(target, copy=False)


class RequestedOutput:
    """One ``InferRequestedOutputTensor``."""

    __slots__ = ("name", "owner", "parameters")

    def __init__(self, owner: InferRequest) -> None:
        self.owner = owner
        self.name = ""
        self.parameters: Dict[str, Param] = {}


class InferRequest:
    """A ``ModelInferRequest`` as read: strings, parameters, tensors, raw buffers (views)."""

    __slots__ = ("budget", "buf", "id", "inputs", "model_name", "model_version", "outputs",
                 "owner", "parameters", "raw")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.owner = self
        self.model_name = self.model_version = self.id = ""
        self.parameters: Dict[str, Param] = {}
        self.inputs: List[InputTensor] = []
        self.outputs: List[RequestedOutput] = []
        self.raw: List[memoryview] = []
        self.budget = MAX_PARAMETERS


def read_infer_request(body: Buffer) -> InferRequest:
    """Read and validate a serialized ``ModelInferRequest`` (malformed: ``wire.Malformed``;
    over a limit: a ``BadRequest``).  Every input's contents are validated and counted here
    (bytes elements up to ``MAX_STRINGS`` + 1: ``InputTensor.check`` refuses more, once the
    name is known to be the signature's); their values are read later, from the body."""
    buf = view(body)
    req = InferRequest(buf)
    read_message(buf, 0, len(buf), _REQUEST, req)
    for t in req.inputs:
        if t.contents is not None:  # strings are an object apiece: counted to the limit only
            t.contents.scan(MAX_STRINGS)
    return req


# --- handlers: target, body, where the value starts, where its message ends -> next field ---


def _entry(holder: Any, buf: memoryview, pos: int, end: int) -> int:
    """One map<string, InferParameter> entry into ``holder.parameters`` (a key again replaces)."""
    start, stop = span(buf, pos, end)
    owner = holder.owner
    if owner.budget == 0:
        raise BadRequest(f"the request holds more than {MAX_PARAMETERS} parameters; expected at "
                         f"most {MAX_PARAMETERS}")
    owner.budget -= 1
    entry: List[Any] = ["", None]
    read_message(buf, start, stop, _ENTRY, entry)
    holder.parameters[entry[0]] = entry[1]
    return stop


def _value(entry: List[Any], buf: memoryview, pos: int, end: int) -> int:
    start, stop = span(buf, pos, end)
    read_message(buf, start, stop, _PARAM, entry)  # occurrences merge: the last one set wins
    return stop


def _varint_param(conv: Any) -> Handler:
    def read(entry: List[Any], buf: memoryview, pos: int, end: int) -> int:
        v, pos = read_varint(buf, pos, end)
        entry[1] = conv(v)
        return pos

    return read


def _double(entry: List[Any], buf: memoryview, pos: int, end: int) -> int:
    if pos + 8 > end:
        raise Malformed("double_param runs past its message")
    entry[1] = struct.unpack_from("<d", buf, pos)[0]
    return pos + 8


def _dim(t: InputTensor, buf: memoryview, pos: int, end: int) -> int:
    v, pos = read_varint(buf, pos, end)
    _add_dims(t, [_signed(v)])
    return pos


def _dims(t: InputTensor, buf: memoryview, pos: int, end: int) -> int:
    start, stop = span(buf, pos, end)
    n = count_varints(buf, start, stop)  # validated, and counted before any is kept
    _add_dims(t, [] if t.rank_over or len(t.dims) + n > MAX_RANK else
              [_signed(v) for v in small_varints(buf, start, stop)], n)
    return stop


def _add_dims(t: InputTensor, dims: List[int], n: int = 1) -> None:
    if t.rank_over or len(t.dims) + n > MAX_RANK:
        t.rank_over = True
    else:
        t.dims.extend(dims)


def _contents(t: InputTensor, buf: memoryview, pos: int, end: int) -> int:
    start, stop = span(buf, pos, end)
    if t.contents is None:
        t.contents = Contents(buf)
    t.contents.add_part(start, stop)
    return stop


def _tensor(kind: str, make: Any, table: Dict[int, Handler]) -> Handler:
    """A handler adding one ``kind`` ("inputs", "outputs") message to the request."""

    def read(req: InferRequest, buf: memoryview, pos: int, end: int) -> int:
        start, stop = span(buf, pos, end)
        held: List[Any] = getattr(req, kind)
        if len(held) >= MAX_TENSORS:
            raise BadRequest(f"the request holds more than {MAX_TENSORS} {kind}; expected 1 to "
                             f"{MAX_TENSORS}")
        one = make(req)
        read_message(buf, start, stop, table, one)
        held.append(one)
        return stop

    return read


def _raw(req: InferRequest, buf: memoryview, pos: int, end: int) -> int:
    start, stop = span(buf, pos, end)
    if len(req.raw) >= MAX_TENSORS:
        raise BadRequest(f"the request holds more than {MAX_TENSORS} raw_input_contents; "
                         "expected one per input at most")
    req.raw.append(buf[start:stop])
    return stop


def _key(number: int, wire: int) -> int:
    return number << 3 | wire


_PARAM: Dict[int, Handler] = {  # InferParameter: a oneof
    _key(1, 0): _varint_param(lambda v: v != 0),
    _key(2, 0): _varint_param(_signed),
    _key(3, 2): string_reader(1, "a string_param"),
    _key(4, 1): _double,
    _key(5, 0): _varint_param(int),
}
_ENTRY: Dict[int, Handler] = {_key(1, 2): string_reader(0, "a parameter name"), _key(2, 2): _value}
_INPUT: Dict[int, Handler] = {
    _key(1, 2): string_reader("name", "an input name"),
    _key(2, 2): string_reader("datatype", "an input datatype"),
    _key(3, 0): _dim,
    _key(3, 2): _dims,
    _key(4, 2): _entry,
    _key(5, 2): _contents,
}
_OUTPUT: Dict[int, Handler] = {_key(1, 2): string_reader("name", "an output name"), _key(2, 2): _entry}
_REQUEST: Dict[int, Handler] = {
    _key(1, 2): string_reader("model_name", "model_name"),
    _key(2, 2): string_reader("model_version", "model_version"),
    _key(3, 2): string_reader("id", "id"),
    _key(4, 2): _entry,
    _key(5, 2): _tensor("inputs", InputTensor, _INPUT),
    _key(6, 2): _tensor("outputs", RequestedOutput, _OUTPUT),
    _key(7, 2): _raw,
}

__all__ = ["MAX_PARAMETERS", "InferRequest", "InputTensor", "Param", "RequestedOutput",
           "read_infer_request"]
