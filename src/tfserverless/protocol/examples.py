"""JSON examples (TF Serving's ``:classify`` / ``:regress`` bodies) as serialized
``tf.train.Example`` protos, written by hand like every message here.

A feature's JSON value is a scalar or a list: integers become an ``int64_list``, any float a
``float_list``, strings and ``{"b64": ...}`` a ``bytes_list``.  ``context`` is merged into
every example as TF Serving merges it: its serialized features come first, so the example's
own win (protobuf map semantics).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, List

import numpy as np

from ..errors import BadRequest
from .text import quote
from .wire import encode_varints, tagged

MAX_FEATURES = 4096


def _value_bytes(name: str, v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass")
    if isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str):
        try:
            return base64.b64decode(v["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"feature {quote(name)} has a b64 value that is not base64") from None
    raise BadRequest(f"feature {quote(name)} mixes strings with other values; expected one kind")


def _feature(name: str, value: Any) -> bytes:
    """One ``Feature`` message."""
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, (str, dict)) for v in values):
        items = b"".join(tagged(1, _value_bytes(name, v)) for v in values)
        return tagged(1, items)  # bytes_list
    try:
        a = np.array(values)
    except (ValueError, TypeError):
        a = np.array([], dtype=object)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iufb"):
        raise BadRequest(f"feature {quote(name)} must be a number, string or a flat list of them")
    if a.dtype.kind == "f":
        return tagged(2, tagged(1, a.astype("<f4").tobytes()))  # float_list, packed
    if a.dtype.kind == "b":  # true/false: int64 1/0, as TF Serving writes them
        a = a.astype(np.int64)  # (a bool array compared with 2^63 raised OverflowError)
    if a.size and (a.min() < -(1 << 63) or a.max() >= 1 << 63):
        raise BadRequest(f"feature {quote(name)} has integers out of int64's range")
    return tagged(3, tagged(1, encode_varints(a.astype(np.int64))))  # int64_list, packed


def _features(obj: Any, what: str) -> bytes:
    if not isinstance(obj, dict):
        raise BadRequest(f"{what} must be an object of feature: value")
    if len(obj) > MAX_FEATURES:
        raise BadRequest(f"{what} has {len(obj)} features; expected at most {MAX_FEATURES}")
    entries = b"".join(tagged(1, tagged(1, k.encode("utf-8", "surrogatepass"))
                              + tagged(2, _feature(k, v))) for k, v in obj.items())
    return tagged(1, entries)  # Example.features (Features.feature map entries)


def serialize_examples(examples: List[Any], context: Any) -> List[bytes]:
    head = b"" if context == {} else _features(context, '"context"')  # not an object: a 400
    return [head + _features(e, f'"examples"[{i}]') for i, e in enumerate(examples)]


__all__ = ["serialize_examples"]
