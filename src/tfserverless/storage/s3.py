"""s3://bucket/key (an archive) or s3://bucket/prefix/ (every object under it), via boto3.

Credentials come from boto3's default chain; ``S3_ENDPOINT_URL`` points at a private or
local S3-compatible server.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..config import Config
from .base import ObjectStore, RangeIgnored, Source, changed, unavailable


class S3Source(ObjectStore):
    scheme = "s3"

    def __init__(self, url: str, config: Config) -> None:
        super().__init__(url)
        # Deferred: boto3 costs ~0.3 s to import and only s3:// models need it.
        import boto3
        from botocore.config import Config as BotoConfig

        env = config.environ
        # keys from the config's mapping when it has them (Lambda injects them there); else
        # boto3's default chain (instance/task roles, profiles)
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        )
        self._client = session.client(
            "s3",
            endpoint_url=config.s3_endpoint_url or None,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                              connect_timeout=10, read_timeout=60,
                              max_pool_connections=max(10, config.fetch_connections)),
        )

    def _fail(self, e: Exception) -> Optional[Exception]:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = err.get("Code", "?")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            if status == 412:  # If-Match: the object was replaced mid-fetch
                return changed(self.url)
            return unavailable(self.url, f"{code} (HTTP {status})")
        if isinstance(e, BotoCoreError):
            return unavailable(self.url, type(e).__name__)
        return None

    def _head(self, key: str) -> Optional[Tuple[str, int]]:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return str(head.get("ETag", "")), int(head.get("ContentLength", 0))

    def _list(self, prefix: str) -> List[Tuple[str, int, str]]:
        listing: List[Tuple[str, int, str]] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            listing += [(o["Key"], int(o["Size"]), str(o.get("ETag", "")))
                        for o in page.get("Contents", [])]
        return listing

    def _get(self, key: str) -> Any:
        return self._client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def _get_range(self, key: str, start: int, end: int, version: str) -> Any:
        pinned = {"IfMatch": version} if version else {}
        resp = self._client.get_object(Bucket=self.bucket, Key=key,
                                       Range=f"bytes={start}-{end - 1}", **pinned)
        if not resp.get("ContentRange"):  # 200 and the whole object
            resp["Body"].close()
            raise RangeIgnored(self.url)
        return resp["Body"]


def open_source(url: str, config: Config) -> Source:
    return S3Source(url, config)
