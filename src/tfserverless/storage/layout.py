"""Where the SavedModel is inside what was fetched (TF Serving's versioned layout too)."""

from __future__ import annotations

import logging
import os
from typing import List

from ..errors import ModelUnavailable
from ..versions import version_number

log = logging.getLogger("tfserverless.storage")


# the files that make a directory servable: a SavedModel, or `tfserverless convert`'s output
MARKERS = ("saved_model.pb", "litert.json")


def find_saved_model_root(path: str, *, quiet: bool = False, name: str = "") -> str:
    """The directory holding saved_model.pb (or a converted model's litert.json); for TF
    Serving's ``<name>/<version>/`` layout the highest numeric version (said in the log).
    ``name``: what the error calls it (the model's URL, where ``path`` is where it was just
    extracted to)."""
    if any(os.path.isfile(os.path.join(path, m)) for m in MARKERS):
        return path
    found: List[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(m in files for m in MARKERS):
            found.append(root)
            dirs[:] = []
    if not found:
        raise ModelUnavailable(f"no saved_model.pb found under {name or os.path.basename(path) or path}; "
                               "expected a SavedModel (or <name>/<version>/saved_model.pb) or the "
                               "output of `tfserverless convert`")
    depth = min(f.count(os.sep) for f in found)
    shallow = [f for f in found if f.count(os.sep) == depth]
    versions = {f: version_number(os.path.basename(f)) for f in shallow}
    numbered = {f: n for f, n in versions.items() if n is not None}
    if numbered:
        best = max(numbered, key=lambda f: (numbered[f], f))  # 123 and 0123: one of them, always the same
        if not quiet:
            log.info("versioned layout: serving version %d of %s", numbered[best],
                     sorted(numbered.values()))
        return best
    return sorted(shallow)[0]
