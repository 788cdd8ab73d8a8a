"""Model versions as TF Serving reads them: a version directory's name is a number
(``00000123/`` is version 123, the highest of several is served), a version a client names is
compared as a number (``/versions/0123`` is 123, as is gRPC's int64 ``model_spec.version``),
and a bare SavedModel (no version directory) is version 1."""

from __future__ import annotations

import os
import re
from typing import Optional

#: the largest version: TF Serving's versions are int64 (``model_spec.version``)
MAX_VERSION = (1 << 63) - 1
#: ASCII digits only: ``str.isdigit`` takes '²' (which ``int`` refuses) and ``\d`` takes other
#: scripts' digits, which TF Serving does not read as numbers
_DIGITS = re.compile(r"[0-9]+")


def version_number(text: str) -> Optional[int]:
    """The version ``text`` (a directory's name, a URL's part) means, or None when it is not
    one: ASCII digits whose value fits an int64.  The length is checked before ``int`` runs,
    so a client's 5000-digit version costs nothing (and never meets ``int``'s digit limit)."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_VERSION)):
        return None
    n = int(digits)
    return n if n <= MAX_VERSION else None


def version_of(path: str) -> int:
    """The version of the model loaded from ``path``: its directory's name when that is a
    version number (TF Serving's ``<name>/<version>/`` layout), else 1."""
    n = version_number(os.path.basename(os.path.normpath(path)))
    return 1 if n is None else n


def model_name_of(path: str) -> str:
    """The name TF Serving gives the model loaded from ``path``: the directory above its
    version directory (``<name>/<version>/``), else its own directory's name."""
    path = os.path.normpath(path)
    if version_number(os.path.basename(path)) is not None:
        path = os.path.dirname(path)
    return os.path.basename(path)


__all__ = ["MAX_VERSION", "model_name_of", "version_number", "version_of"]
