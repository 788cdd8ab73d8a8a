"""Which module fetches which URL scheme (imported on first use)."""

from __future__ import annotations

import importlib
from typing import Dict

from ..config import Config
from ..errors import ModelUnavailable
from .base import Source, redact

#: scheme -> module implementing ``open_source(url, config) -> Source``; imported on first use
SCHEMES: Dict[str, str] = {
    "": "tfserverless.storage.local",
    "file": "tfserverless.storage.local",
    "http": "tfserverless.storage.http",
    "https": "tfserverless.storage.http",
    "s3": "tfserverless.storage.s3",
    "oss": "tfserverless.storage.oss",
    "gs": "tfserverless.storage.gcs",
}


def scheme_of(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def open_source(url: str, config: Config) -> Source:
    scheme = scheme_of(url)
    module = SCHEMES.get(scheme)
    if module is None:
        raise ModelUnavailable(
            f"unsupported scheme {scheme}:// in {redact(url)}; expected oss://, s3://, gs://, "
            "http(s)://, file:// or a local path", retry_after=60)
    source: Source = importlib.import_module(module).open_source(url, config)
    return source


__all__ = ["SCHEMES", "open_source", "scheme_of"]
