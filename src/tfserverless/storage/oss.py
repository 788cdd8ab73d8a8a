"""oss://bucket/key (an archive) or oss://bucket/prefix/ (every object under it), via oss2.

Credentials: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN``
(what Function Compute injects); endpoint from ``OSS_ENDPOINT`` or ``OSS_REGION``.  An IP or
localhost endpoint is addressed path-style (private or local servers).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..config import Config
from ..errors import ConfigError
from .base import ObjectStore, RangeIgnored, Source, changed, unavailable


def endpoint_for(config: Config) -> str:
    env = config.environ
    if config.oss_endpoint:
        ep = config.oss_endpoint
    elif env.get("OSS_REGION") or env.get("ALIBABA_CLOUD_REGION") or env.get("FC_REGION"):
        region = env.get("OSS_REGION") or env.get("ALIBABA_CLOUD_REGION") or env.get("FC_REGION")
        ep = f"oss-{region}.aliyuncs.com"
    else:
        raise ConfigError("OSS_ENDPOINT (or OSS_REGION) is not set; expected e.g. "
                          "oss-cn-shanghai.aliyuncs.com for oss:// models")
    return ep if "://" in ep else "https://" + ep


class OssSource(ObjectStore):
    scheme = "oss"

    def __init__(self, url: str, config: Config) -> None:
        super().__init__(url)
        # Deferred: oss2 is only needed for oss:// models.
        import oss2

        env = config.environ
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID") or env.get("OSS_ACCESS_KEY_ID", "")
        secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET") or env.get("OSS_ACCESS_KEY_SECRET", "")
        token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or env.get("OSS_SESSION_TOKEN", "")
        if token:
            auth: Any = oss2.StsAuth(key_id, secret, token)
        elif key_id:
            auth = oss2.Auth(key_id, secret)
        else:
            auth = oss2.AnonymousAuth()
        self._bucket = oss2.Bucket(auth, endpoint_for(config), self.bucket, connect_timeout=30)

    def _fail(self, e: Exception) -> Optional[Exception]:
        import oss2

        if isinstance(e, oss2.exceptions.OssError):
            code = getattr(e, "code", "") or type(e).__name__
            status = getattr(e, "status", "?")
            if status == -2:  # oss2's RequestError: no connection
                return unavailable(self.url, "server unreachable")
            if status == 412:  # If-Match: the object was replaced mid-fetch
                return changed(self.url)
            return unavailable(self.url, f"{code} (HTTP {status})")
        return None

    def _head(self, key: str) -> Optional[Tuple[str, int]]:
        import oss2

        try:
            meta = self._bucket.head_object(key)
        except oss2.exceptions.NotFound:
            return None
        return str(meta.etag), int(meta.content_length or 0)

    def _get(self, key: str) -> Any:
        return self._bucket.get_object(key)

    def _get_range(self, key: str, start: int, end: int, version: str) -> Any:
        resp = self._bucket.get_object(key, byte_range=(start, end - 1),
                                       headers={"If-Match": version} if version else None)
        if resp.status != 206:  # 200 and the whole object
            resp.close()
            raise RangeIgnored(self.url)
        return resp

    def _list(self, prefix: str) -> List[Tuple[str, int, str]]:
        """ListObjects, parsed without minding XML namespaces: OSS answers without one,
        S3-compatible private stores (and local test servers) with S3's."""
        import xml.etree.ElementTree as ET

        out: List[Tuple[str, int, str]] = []
        marker = ""
        while True:
            resp = self._bucket._do("GET", self.bucket, "",
                                    params={"prefix": prefix, "marker": marker, "max-keys": "1000"})
            root = ET.fromstring(resp.read())
            for el in root.iter():
                el.tag = el.tag.rsplit("}", 1)[-1]
            for c in root.findall("Contents"):
                out.append((c.findtext("Key", ""), int(c.findtext("Size", "0")),
                            c.findtext("ETag", "")))
            if root.findtext("IsTruncated", "false").lower() != "true" or not out:
                return out
            marker = root.findtext("NextMarker") or out[-1][0]


def open_source(url: str, config: Config) -> Source:
    return OssSource(url, config)
