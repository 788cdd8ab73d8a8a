"""Local paths (and file:// URLs): a directory is served in place, an archive is extracted."""

from __future__ import annotations

import os
from typing import Optional
from urllib.parse import unquote, urlsplit

from ..config import Config
from .base import ObjectInfo, Source, Stream, unavailable


class LocalSource(Source):
    def __init__(self, url: str, config: Config) -> None:
        self.url = url
        self.path = unquote(urlsplit(url).path) if url.startswith("file://") else url

    def stat(self) -> ObjectInfo:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise unavailable(self.url, "no such file or directory") from None
        except OSError as e:
            raise unavailable(self.url, e.strerror or type(e).__name__) from None
        if os.path.isdir(self.path):
            return ObjectInfo("prefix", f"dir-{st.st_mtime_ns}", 0)
        return ObjectInfo("object", f"{st.st_mtime_ns}-{st.st_size}", st.st_size)

    def open(self, relative: str = "") -> Stream:
        return open(os.path.join(self.path, relative) if relative else self.path, "rb")

    def local_dir(self) -> Optional[str]:
        return self.path if os.path.isdir(self.path) else None


def open_source(url: str, config: Config) -> Source:
    return LocalSource(url, config)
