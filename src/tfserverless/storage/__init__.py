"""Fetch a model (or warm-up file) from where the user keeps it; knows nothing of requests."""

from __future__ import annotations

import logging
import os

from ..config import Config
from ..errors import ModelUnavailable

log = logging.getLogger("tfserverless.storage")


def find_saved_model_root(path: str) -> str:
    """The directory holding saved_model.pb; for TF Serving's ``<name>/<version>/`` layout the
    highest numeric version."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    best = None
    for root, dirs, files in os.walk(path):
        dirs.sort()
        if "saved_model.pb" in files:
            _parent, leaf = os.path.split(root)
            key = (root.count(os.sep), not leaf.isdigit())
            if best is None or key < best[0] or (
                key == best[0] and leaf.isdigit() and best[2].isdigit() and int(leaf) > int(best[2])
            ):
                best = (key, root, leaf)
            dirs[:] = []
    if best is None:
        raise ModelUnavailable(f"no saved_model.pb found under {path}; expected a SavedModel")
    return best[1]


def fetch_model(config: Config) -> str:
    path = config.require_model_path()
    if not os.path.exists(path):
        raise ModelUnavailable(f"model path {path} does not exist; expected a SavedModel directory")
    return find_saved_model_root(path)
