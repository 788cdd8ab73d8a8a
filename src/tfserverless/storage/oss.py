"""oss://bucket/key (an archive) or oss://bucket/prefix/ (every object under it), via oss2.

Credentials: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN``
(what Function Compute injects); endpoint from ``OSS_ENDPOINT`` or ``OSS_REGION``.  An IP or
localhost endpoint is addressed path-style (private or local servers).
"""

from __future__ import annotations

from typing import IO, Any, List, Tuple

from ..config import Config
from ..errors import ConfigError
from .base import ObjectInfo, Source, prefix_info, unavailable


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


class OssSource(Source):
    def __init__(self, url: str, config: Config) -> None:
        self.url = url
        rest = url[len("oss://"):]
        self.bucket_name, _, self.key = rest.partition("/")
        if not self.bucket_name:
            raise unavailable(url, "no bucket in the URL; expected oss://bucket/key")
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
        self._bucket = oss2.Bucket(auth, endpoint_for(config), self.bucket_name,
                                   connect_timeout=30)
        self._prefix = ""

    def _fail(self, e: Exception) -> Exception:
        import oss2

        if isinstance(e, oss2.exceptions.OssError):
            code = getattr(e, "code", "") or type(e).__name__
            status = getattr(e, "status", "?")
            if status == -2:  # oss2's RequestError: no connection
                return unavailable(self.url, "server unreachable")
            return unavailable(self.url, f"{code} (HTTP {status})")
        return e

    def stat(self) -> ObjectInfo:
        import oss2

        try:
            if self.key and not self.key.endswith("/"):
                try:
                    meta = self._bucket.head_object(self.key)
                    return ObjectInfo("object", str(meta.etag), int(meta.content_length or 0))
                except oss2.exceptions.NotFound:
                    pass
            prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
            listing = self._list(prefix)
        except oss2.exceptions.OssError as e:
            raise self._fail(e) from None
        info = prefix_info(self.url, prefix, listing)
        self._prefix = prefix
        return info

    def _list(self, prefix: str) -> List[Tuple[str, int, str]]:
        """ListObjects, parsed without minding XML namespaces: OSS answers without one,
        S3-compatible private stores (and local test servers) with S3's."""
        import xml.etree.ElementTree as ET

        out: List[Tuple[str, int, str]] = []
        marker = ""
        while True:
            resp = self._bucket._do("GET", self.bucket_name, "",
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

    def open(self, relative: str = "") -> IO[bytes]:
        import oss2

        key = self._prefix + relative if relative else self.key
        try:
            return self._bucket.get_object(key)  # type: ignore[no-any-return]
        except oss2.exceptions.OssError as e:
            raise self._fail(e) from None


def open_source(url: str, config: Config) -> Source:
    return OssSource(url, config)
