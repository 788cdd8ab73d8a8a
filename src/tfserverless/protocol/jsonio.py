"""JSON in and out for the JSON protocols, with no per-element Python loops on numbers.

orjson when installed (it writes numpy arrays itself, float32 in the shortest form that reads
back to the same float32); else the standard library (C-accelerated too; float32 values
written as the float64 that equals them, so they still read back exactly).  Non-finite
floats are written as TF Serving writes them: ``NaN``, ``Infinity``, ``-Infinity``.  Big
numeric arrays of a body are read by ``jsonfast`` where the caller says they may stand.
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
    orjson = None  # type: ignore[assignment]

MAX_INT_DIGITS = 20  # no int64/uint64 needs more; longer ones cost quadratic time to parse


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits; expected at most {MAX_INT_DIGITS}")
    return int(text)


def loads(body: bytes, what: str, arrays: Optional[Spec] = None) -> Any:
    """Parse a JSON body; a 400 naming where it broke and ``what`` was expected otherwise
    (the same words with orjson or the standard library).  ``arrays``: where big numeric
    arrays may come back as ndarrays (``jsonfast``) instead of lists."""
    if arrays is not None:
        doc = jsonfast.loads(body, arrays)
        if doc is not None:
            return doc
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            if b"NaN" not in body and b"Infinity" not in body:
                raise _invalid(e, what) from None
    try:  # NaN and Infinity are accepted, as TF Serving accepts them
        return json.loads(body, parse_int=_int)
    except json.JSONDecodeError as e:
        raise _invalid(e, what) from None
    except UnicodeDecodeError:
        raise BadRequest(f"body is not valid JSON (not UTF-8); expected {what}") from None
    except RecursionError:
        raise BadRequest(f"body is not valid JSON (nested too deeply); expected {what}") from None
    except ValueError as e:  # an integer too long to be one
        raise BadRequest(f"body is not valid JSON ({e}); expected {what}") from None


def _invalid(e: json.JSONDecodeError, what: str) -> BadRequest:
    return BadRequest(f"body is not valid JSON at line {e.lineno} column {e.colno} "
                      f"(byte {e.pos}); expected {what}")


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


__all__ = ["dumps", "loads"]
