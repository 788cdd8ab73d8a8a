"""JSON in and out for the JSON protocols, with no per-element Python loops on numbers.

orjson when installed (it writes numpy arrays itself, float32 in the shortest form that reads
back to the same float32); else the standard library (C-accelerated too; float32 values
written as the float64 that equals them, so they still read back exactly).  Non-finite
floats are written as TF Serving writes them: ``NaN``, ``Infinity``, ``-Infinity``.  Big
numeric arrays of a body are read by ``jsonfast`` where the caller says they may stand.

What a body may hold is one rule, whichever parser reads it (simdjson, orjson, or the
standard library, which the 3.7 processors use when orjson is missing).  TF Serving's REST
parser is the reference: RapidJSON with ``kParseNanAndInfFlag``, over
``EncodedInputStream<UTF8<>, MemoryStream>``:

* ``NaN``, ``Infinity`` and ``-Infinity`` are numbers (literals; the same letters inside a
  string are just text).  RapidJSON's other spellings (``Inf``, ``-NaN``) are not accepted.
* a leading UTF-8 byte-order mark is skipped, as that stream skips it (RFC 8259 lets a parser
  ignore one); anywhere else it is not JSON.
* a number past float64's range (``1e999``) is a 400 naming it, as RapidJSON's "number too
  big" (the standard library would read it as inf, and the model see inf silently).
* integers past 64 bits (and any of more than 20 digits) are read as float64, as RapidJSON and
  orjson read them (the standard library would make Python ints, in quadratic time when long).
* a string holding a lone surrogate escape (``"\\ud800"``) is a 400, as in RapidJSON: it is
  no text, and no reply could carry it back.  Bodies must be UTF-8 (RapidJSON does not check;
  Python strings need it).

orjson and simdjson refuse all of those by themselves (and every body they refuse goes on to
the standard library, which accepts the literals and words the 400 for the rest); the
standard library is held to the rule by the checks in ``_parse``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, List, Optional

import numpy as np

from ..errors import BadRequest
from . import jsonfast
from .jsonfast import Spec

try:  # optional: ~5x quicker both ways; the 3.7 processors may not have a wheel
    import orjson
except ImportError:  # pragma: no cover - exercised by the compat venvs without it
    orjson = None  # type: ignore[assignment]  # None: not installed (mypy types the name as the module)



class NotJSON(BadRequest):
    """A body that is no JSON at all (its syntax), as against JSON that asks the wrong thing."""


MAX_INT_DIGITS = 20  # no int64/uint64 needs more; longer ones are read as floats
#: arrays and objects one body may open: each costs a parser ~50-100x what a number of the same
#: bytes does (``[],`` x 2.8M: ~1 s and ~300 MB for 8 MiB, against ~0.1 s for numbers), and no
#: tensor needs this many (a batch of rows as objects can go columnar: ``"inputs"``)
MAX_CONTAINERS = 1 << 18
BOM = b"\xef\xbb\xbf"
_INT_RANGE = (-(1 << 63), (1 << 64) - 1)


def _int(text: str) -> Any:
    """An integer token as RapidJSON and orjson read it: an int within 64 bits, else a float
    (``float`` reads any length in linear time; ``int`` would take quadratic time)."""
    if len(text) <= MAX_INT_DIGITS:
        value = int(text)
        if _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            return value
    return _float(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {_cut(text)} is past float64's range (1.8e308)")
    return value


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def loads(body: bytes, what: str, arrays: Optional[Spec] = None) -> Any:
    """Parse a JSON body; a 400 naming where it broke and ``what`` was expected otherwise
    (the same words and the same answer with orjson or the standard library: see the module
    docstring).  ``arrays``: where big numeric arrays may come back as ndarrays
    (``jsonfast``) instead of lists."""
    skip = 3 if body[:3] == BOM else 0
    if skip:
        body = body[skip:]
    if arrays is not None:
        doc = jsonfast.loads(body, arrays)
        if doc is not None:
            return doc
    check_containers(body)
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # NaN or Infinity, or not JSON: the standard library says which, as below
    return _parse(body, what, skip)


def check_containers(body: bytes) -> None:
    """A 400 for a body opening more than ``MAX_CONTAINERS`` arrays and objects, before any
    parser builds them (``[`` and ``{`` in strings count too).  Only bodies long enough to hold
    that many are looked at: one vectorised pass, ~0.1 ms a MB."""
    if len(body) <= 2 * MAX_CONTAINERS:
        return
    # '[' (0x5b) and '{' (0x7b) are the only bytes that | 0x20 make 0x7b
    n = int(np.count_nonzero((np.frombuffer(body, np.uint8) | 0x20) == 0x7B))
    if n > MAX_CONTAINERS:
        raise BadRequest(f"body opens {n} JSON arrays or objects; expected at most "
                         f"{MAX_CONTAINERS}: send a batch as one array per input (columnar "
                         '"inputs") or as binary tensors (V2)')


def bool_words(body: bytes) -> int:
    """How many times ``true`` or ``false`` appear in ``body`` (inside strings too: callers
    compare it with the true/false values they expect, and look closer when there are more).
    Found by their rarest letters (memchr: ~0.01 ms a MB of numbers); a body full of those
    letters is counted in one plain pass instead."""
    count = 0
    for letter, word in ((b"u", b"true"), (b"l", b"false")):  # 'u', 'l': index 2 of each word
        at = body.find(letter, 2)
        for _ in range(64):
            if at < 0:
                break
            count += body.startswith(word, at - 2)
            at = body.find(letter, at + 1)
        else:
            return body.count(b"true") + body.count(b"false")
    return count


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # the first half of a surrogate's escape
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_NO_DIGIT = np.zeros(8, bool)
_RUN = 105  # a run of 210 digits (the least that overflows with a 2-digit exponent) holds an
# aligned block of this many


def _parse(body: bytes, what: str, skip: int = 0) -> Any:
    """The standard library, held to the module's rule (``skip``: bytes of BOM before
    ``body``, for the positions errors give)."""
    try:
        text = body.decode("utf-8")  # strict: json.loads(bytes) would take UTF-16 and surrogates
    except UnicodeDecodeError as e:
        raise NotJSON(f"body is not valid JSON (not UTF-8 at byte {skip + e.start}); expected "
                         f"{what}") from None
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float if _may_overflow(body) else None)
    except json.JSONDecodeError as e:
        raise NotJSON(f"body is not valid JSON at line {e.lineno} column {e.colno} "
                         f"(byte {skip + _byte(text, e.pos)}); expected {what}") from None
    except RecursionError:
        raise NotJSON(f"body is not valid JSON (nested too deeply); expected {what}") from None
    except ValueError as e:  # a number past float64's range (_float)
        raise NotJSON(f"body is not valid JSON ({e}); expected {what}") from None
    if "\\" in text and _SURROGATE.search(text) is not None:  # memchr, then rarely a regex
        lone = _lone_surrogate(text)
        if lone is not None:
            raise NotJSON(f"body is not valid JSON: a string holds a lone surrogate "
                             f"{lone.group(0)} (byte {skip + _byte(text, lone.start())}); expected "
                             f"text, surrogates only in high-low pairs, in {what}")
    return doc


def _byte(text: str, pos: int) -> int:
    return len(text[:pos].encode("utf-8"))


def _lone_surrogate(text: str) -> Optional[re.Match[str]]:
    """The first escape of a surrogate not in a high-low pair, in a body the standard library
    parsed (so every backslash starts an escape: walking them in order, an escaped backslash
    followed by ``ud800`` is the text, not a surrogate)."""
    high: Optional[re.Match[str]] = None  # an escaped high surrogate awaiting its low half
    for m in _ESCAPE.finditer(text):  # the escapes only; one costs a few steps
        unit = int(m.group(1), 16) if m.group(1) else -1
        if high is not None:
            if m.start() != high.end() or not 0xDC00 <= unit <= 0xDFFF:
                return high
            high = None
        elif 0xD800 <= unit <= 0xDBFF:
            high = m
        elif 0xDC00 <= unit <= 0xDFFF:
            return m
    return high


def _may_overflow(body: bytes) -> bool:
    """Whether a number in ``body`` may be past float64's range: it would need an exponent of
    3 digits or a run of 210 digits.  A few vectorised passes (~0.7 ms a MB) instead of a
    Python call per float."""
    b = np.frombuffer(body, np.uint8)
    digit = (b - 48) < 10  # uint8 arithmetic wraps: every other byte lands at 10 or more
    whole = len(b) // _RUN * _RUN
    if whole and bool(digit[:whole].reshape(-1, _RUN).all(axis=1).any()):
        return True
    e = np.flatnonzero((b | 0x20) == ord("e"))
    if not e.size:
        return False
    digit = np.concatenate([digit, _NO_DIGIT])
    sign = np.concatenate([(b == ord("+")) | (b == ord("-")), _NO_DIGIT])
    at = e + sign[e + 1]  # the exponent's first digit is at at + 1
    return bool((digit[at + 1] & digit[at + 2] & digit[at + 3]).any())


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|null')


def _non_finite(values: List[np.ndarray]) -> Iterator[bytes]:
    for a in values:
        bad = a.reshape(-1)[~np.isfinite(a.reshape(-1))]
        for v in bad:  # only the non-finite elements, in order
            yield b"NaN" if v != v else (b"Infinity" if v > 0 else b"-Infinity")


def dumps(data: Any, floats: List[np.ndarray]) -> bytes:
    """``data`` (dicts, lists, numpy arrays, str, numbers) as JSON.  ``floats``: the float
    arrays in ``data`` in the order they appear, so that non-finite values are written."""
    # a sum is NaN or inf whenever an element is (and at worst inf on overflow: then the
    # search below just finds nothing to fill): one reduction, no temporary mask
    non_finite = [a for a in floats if a.size and not math.isfinite(float(a.sum(dtype=np.float64)))]
    if orjson is None:
        return json.dumps(data, default=_to_list, separators=(",", ":")).encode()
    out = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY, default=_to_list)
    if non_finite:  # orjson writes them as null; nothing else in our replies is null
        fill = _non_finite(non_finite)
        out = _TOKENS.sub(lambda m: next(fill) if m.group(0) == b"null" else m.group(0), out)
    return out


def _to_list(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):  # orjson: not C-contiguous or an unsupported dtype
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


__all__ = ["BOM", "MAX_CONTAINERS", "bool_words", "check_containers", "dumps", "loads"]
