"""gs://bucket/key (an archive) or gs://bucket/prefix/ (every object under it), via
``google-cloud-storage``.

Credentials come from Google's default chain (Application Default Credentials: the Cloud Run
service account, ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's login).  The library's own
``STORAGE_EMULATOR_HOST`` points at an emulator (tests: ``gcp-storage-emulator``), where no
credentials are needed.
"""

from __future__ import annotations

import io
from typing import Any, List, Optional, Tuple

from ..config import Config
from .base import CHUNK, ObjectStore, RangeIgnored, Source, changed, unavailable


class GcsSource(ObjectStore):
    scheme = "gs"

    def __init__(self, url: str, config: Config) -> None:
        super().__init__(url)
        # Deferred: google-cloud-storage costs ~0.5 s to import and only gs:// models need it.
        from google.cloud import storage

        env = config.environ
        emulator = env.get("STORAGE_EMULATOR_HOST", "")
        try:
            if emulator:
                from google.auth.credentials import AnonymousCredentials

                self._client = storage.Client(
                    project=env.get("GOOGLE_CLOUD_PROJECT") or "emulator",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": emulator if "://" in emulator
                                    else "http://" + emulator})
            else:
                self._client = storage.Client(project=env.get("GOOGLE_CLOUD_PROJECT") or None)
        except Exception as e:  # no default credentials, mostly
            raise self._sdk(e) from None
        self._bucket = self._client.bucket(self.bucket)
        self._pinned = False  # a 404 then means: the generation went away

    def _fail(self, e: Exception) -> Optional[Exception]:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        if isinstance(e, (api.PreconditionFailed, api.NotFound)) and self._pinned:
            return changed(self.url)  # the generation read so far is gone or was replaced
        if isinstance(e, api.GoogleAPICallError):
            return unavailable(self.url, f"{type(e).__name__} (HTTP {e.code})")
        if isinstance(e, auth.DefaultCredentialsError):
            return unavailable(self.url, "no Google credentials (Application Default Credentials)")
        if isinstance(e, (auth.GoogleAuthError, ConnectionError, OSError)):
            return unavailable(self.url, f"server unreachable ({type(e).__name__})")
        try:
            import requests
        except ImportError:  # pragma: no cover - google-cloud-storage depends on it
            return None
        if isinstance(e, requests.RequestException):
            return unavailable(self.url, f"server unreachable ({type(e).__name__})")
        return None

    def _head(self, key: str) -> Optional[Tuple[str, int]]:
        blob = self._bucket.get_blob(key)
        if blob is None:
            return None
        return f"{blob.etag}-{blob.generation}", int(blob.size or 0)

    def _list(self, prefix: str) -> List[Tuple[str, int, str]]:
        return [(b.name, int(b.size or 0), f"{b.etag}-{b.generation}")
                for b in self._client.list_blobs(self.bucket, prefix=prefix)]

    def _get(self, key: str) -> Any:
        return self._bucket.blob(key).open("rb", chunk_size=CHUNK * 8)

    def _get_range(self, key: str, start: int, end: int, version: str) -> Any:
        generation = version.rsplit("-", 1)[-1]
        gen = int(generation) if generation.isdigit() else None
        self._pinned = gen is not None
        data = self._bucket.blob(key, generation=gen).download_as_bytes(
            start=start, end=end - 1, if_generation_match=gen, checksum=None)
        if len(data) > end - start:  # the whole object
            raise RangeIgnored(self.url)
        return io.BytesIO(data)


def open_source(url: str, config: Config) -> Source:
    return GcsSource(url, config)
