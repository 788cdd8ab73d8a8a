"""Big numeric arrays of a JSON body straight into numpy, with no Python object per number.

A batch of 64 MNIST rows is a ~1 MB body of 50,176 numbers: parsing it to Python floats
(orjson) and those to an array (numpy) costs ~2.3 ms, the model ~0.6 ms.  pysimdjson parses
the body and copies a nested numeric array into a buffer in C (~1.0 ms).  Only where a
protocol's ``Spec`` says an array may stand (TF Serving's ``instances``/``inputs``, V2's
``data``), and only for an array plainly rectangular, all numbers, of at least
``MIN_VALUES``: it becomes an int64 (all integers) or float64 array, what numpy makes of the
same lists.  Everything else is converted to Python as orjson would.

``loads`` answers None whenever the body is anything else (simdjson missing, a small body, a
parse error, a big integer, a byte-order mark, an array hiding deeper nesting...): the caller
then parses it the ordinary way, so answers and error messages are the ordinary ones.  Imports
no TensorFlow.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

try:  # optional: no wheel for some old Pythons; then every body takes the ordinary parse
    import simdjson
except ImportError:  # pragma: no cover - exercised by the compat venvs without it
    simdjson = None  # type: ignore[assignment]  # None: not installed (mypy types the name as the module)

MIN_BYTES = 64 * 1024  # below this the ordinary parse is as quick
MIN_VALUES = 1024  # smaller arrays stay lists (shapes, names: what the protocols walk)
MIN_ROW = 16  # big arrays of shorter rows: the per-row checks would cost more than they save
REUSE_MAX = 2 * 1024 * 1024  # parsers are kept (holding ~2x this) for bodies up to it
KEEP = 2
MAX_NODES = 4096  # values walked in Python outside the arrays; beyond: the ordinary parse
ARRAYS = "arrays"  # in a Spec: here an array, or an object of arrays, may become ndarrays

#: key -> ARRAYS, or a one-element list: a list of objects, each read with that Spec
Spec = Mapping[str, Any]
TFSERVING: Spec = {"instances": ARRAYS, "inputs": ARRAYS}
V2: Spec = {"inputs": [{"data": ARRAYS}]}
_idle: List[Any] = []  # parsers kept between bodies (each holds ~2x the largest it read)
_BOM = b"\xef\xbb\xbf"  # jsonio.loads skips one; simdjson would skip a second, which is no JSON


def _take(size: int) -> Any:
    """A kept parser for bodies up to ``REUSE_MAX``: a fresh one maps (and faults in) ~2x the
    body of new memory each time, which measured +1.6 ms on a 1 MB body."""
    if size <= REUSE_MAX:
        try:
            return _idle.pop()  # atomic under the GIL
        except IndexError:
            return simdjson.Parser(max_capacity=REUSE_MAX)
    return simdjson.Parser()


def _give(parser: Any, size: int) -> None:
    """Keep it for the next body, once nothing of this one refers to it.  Parsing holds the
    GIL, so a process parses one body at a time: two kept are plenty, whatever the threads."""
    if size <= REUSE_MAX and len(_idle) < KEEP:
        _idle.append(parser)


class _Abort(Exception):
    """Not a body for this path: parse it the ordinary way."""


def available() -> bool:
    return simdjson is not None


def loads(body: bytes, spec: Spec) -> Optional[Dict[str, Any]]:
    """The body as orjson would give it, with ``spec``'s big numeric arrays as ndarrays;
    None to say: parse it the ordinary way."""
    if simdjson is None or len(body) < MIN_BYTES or body.startswith(_BOM):
        return None
    parser = _take(len(body))
    out = _read(parser, body, spec)  # returns with no proxy into the parser left alive
    _give(parser, len(body))
    return out


def _read(parser: Any, body: bytes, spec: Spec) -> Optional[Dict[str, Any]]:
    try:
        doc = parser.parse(body)
    except Exception:  # ValueError, RuntimeError, UnicodeDecodeError...: the ordinary parse says
        return None
    if not isinstance(doc, simdjson.Object):
        return None
    walk = _Walk()
    try:
        out = walk.object(doc, spec)
    except Exception:  # _Abort; or simdjson refusing a lookup (a key holding \u0000 is a
        return None  # KeyError): the ordinary parse reads it, and never a 500 for a body
    if not walk.arrays:
        return None  # nothing gained: keep the one ordinary way for such bodies
    # every '[' in the body must be an array counted here: else an array hid deeper nesting
    # (``as_buffer`` flattens [[1, [2]], [3, 4]] to four numbers) or a string holds one
    if np.count_nonzero(np.frombuffer(body, np.uint8) == ord("[")) != walk.brackets:
        return None
    return out


def _first_leaf(arr: Any) -> Optional[List[int]]:
    """The shape down the first elements, if that path ends in a number (else None: strings,
    true/false, null, objects, an empty array, nesting past 32)."""
    shape: List[int] = []
    node = arr
    while isinstance(node, simdjson.Array) and len(shape) <= 32:
        shape.append(len(node))
        if not shape[-1]:
            return None
        node = node[0]
    return None if isinstance(node, bool) or not isinstance(node, (int, float)) else shape


class _Walk:
    def __init__(self) -> None:
        self.brackets = 0  # arrays met (each one '[' in the body)
        self.arrays = 0  # ndarrays made
        self.nodes = 0

    def _visit(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise _Abort()

    def _items(self, obj: Any) -> List[Tuple[str, Any]]:
        """(key, value) with values unconverted (``items()`` converts them all)."""
        keys = list(obj.keys())
        self._visit(len(keys))
        if len(set(keys)) != len(keys):
            raise _Abort()  # a repeated key: lookups here would find its first value, not last
        return [(key, obj[key]) for key in keys]

    def object(self, obj: Any, spec: Spec) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key, value in self._items(obj):
            sub = spec.get(key)
            if sub == ARRAYS:
                out[key] = self._arrays(value)
            elif isinstance(sub, list) and isinstance(value, simdjson.Array):
                self.brackets += 1
                self._visit(len(value))
                out[key] = [self.object(v, sub[0]) if isinstance(v, simdjson.Object)
                            else self._plain(v) for v in value]
            else:
                out[key] = self._plain(value)
        return out

    def _arrays(self, value: Any) -> Any:
        if isinstance(value, simdjson.Object):  # named inputs: each may be an array
            out = {}
            for key, v in self._items(value):
                out[key] = self._array(v) if isinstance(v, simdjson.Array) else self._plain(v)
            return out
        if not isinstance(value, simdjson.Array):
            return self._plain(value)
        shape = _first_leaf(value)
        if shape is None:
            raise _Abort()  # the body's bulk is strings or objects: nothing to gain here
        return self._array(value, shape)

    def _array(self, arr: Any, shape: Optional[List[int]] = None) -> Any:
        shape = _first_leaf(arr) if shape is None else shape
        a = None if shape is None else self._numeric(arr, shape)
        return self._plain(arr) if a is None else a

    def _numeric(self, arr: Any, shape: List[int]) -> Optional[np.ndarray]:
        """``arr`` as an ndarray of ``shape`` (its first leaf a number); None: keep it a list
        (small)."""
        total, arrays = 1, 0
        for d in shape:  # a few small ints: a loop beats numpy's call overhead
            arrays += total  # 1 + d0 + d0*d1 + ...: the '[' of this array and those inside
            total *= d
        if total < MIN_VALUES:
            return None
        if shape[-1] < MIN_ROW:  # big, but checking its rows here would cost more than it saves
            raise _Abort()
        level = [arr]
        for width in shape[1:]:  # every array above the numbers is as long as its level's first
            nxt = []
            for a in level:
                for child in a:
                    if not isinstance(child, simdjson.Array) or len(child) != width:
                        raise _Abort()  # ragged or mixed: the ordinary parse says so
                    nxt.append(child)
            level = nxt
        try:
            values = np.frombuffer(arr.as_buffer(of_type="i"), np.int64)
        except TypeError:  # not all integers
            try:
                values = np.frombuffer(arr.as_buffer(of_type="d"), np.float64)
            except TypeError:
                raise _Abort() from None  # true/false, null, strings among the numbers
        except ValueError:  # an integer past int64: numpy's choice of dtype is the ordinary one
            raise _Abort() from None
        if values.size != total:
            raise _Abort()
        self.brackets += arrays
        self.arrays += 1
        return values.reshape(shape)

    def _plain(self, value: Any) -> Any:
        """A value as Python objects, as orjson gives them; its arrays counted."""
        out: Any
        if isinstance(value, simdjson.Array):
            out = value.as_list()
        elif isinstance(value, simdjson.Object):
            out = value.as_dict()
        else:
            return value
        stack: List[Any] = [out]
        while stack:
            v = stack.pop()
            self._visit()
            if isinstance(v, list):
                self.brackets += 1
                self._visit(len(v))  # a big list of strings: the ordinary parse is as quick
                stack.extend(x for x in v if isinstance(x, (list, dict)))
            else:
                stack.extend(x for x in v.values() if isinstance(x, (list, dict)))
        return out


__all__ = ["ARRAYS", "MIN_BYTES", "TFSERVING", "V2", "Spec", "available", "loads"]
