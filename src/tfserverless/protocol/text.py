"""Client values quoted in error messages: short, one line, and always encodable.

A message names what was wrong, but a client value it quotes may be a megabyte long (a
``datatype`` string, a ``shape`` list, an input name); ``quote`` keeps it to about ``limit``
characters, at a cost bounded by ``limit`` whatever the value's size (``reprlib``: a long
list is cut before it is turned to text).  ``repr`` escapes what a reply could not carry (a
lone surrogate is written ``'\\ud800'``).  Imports nothing of the project's.
"""

from __future__ import annotations

import reprlib
from typing import Any, Iterable

LIMIT = 40  # characters of a quoted value, before the '...'
MAX_LISTED = 5  # values named in one message ("unknown input 'a', 'b' and 7 more")

_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxstring = _repr.maxother = LIMIT
_repr.maxlong = LIMIT


PATH_LIMIT = 200  # characters of a path or method an error echoes


def clip(text: str, limit: int = PATH_LIMIT) -> str:
    """``text`` as it is (a path, a method: no quotes), cut to ``limit`` characters and '...'
    when longer: an error echoing what a client sent stays short whatever it sent."""
    return text if len(text) <= limit else text[:limit] + "..."


def quote(value: Any, limit: int = LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters and '...' when longer; never raises."""
    try:
        if isinstance(value, (str, bytes)):
            text = repr(value[:limit + 1])  # no need to turn more than that into text
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
            text = f"<an integer of {value.bit_length()} bits>"  # repr: quadratic, or refused
        else:
            text = _repr.repr(value)
    except Exception:  # an exotic value: its type says enough
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def listed(values: Iterable[Any], limit: int = MAX_LISTED) -> str:
    """Values quoted and joined with ', ': the first ``limit``, then how many more."""
    items = list(values)
    shown = ", ".join(quote(v) for v in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


__all__ = ["LIMIT", "MAX_LISTED", "PATH_LIMIT", "clip", "listed", "quote"]
