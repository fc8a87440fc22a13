"""boto3 helpers for S3 and S3-compatible stores, configured from :class:`S3Settings`.

Credentials come from the settings when set, else from boto3's standard chain
(environment, profile, instance role); they are never logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlops_spark.config.settings import Settings
from mlops_spark.log import fields

log = logging.getLogger(__name__)


def split_uri(uri: str) -> tuple[str, str]:
    """``s3a://bucket/a/b`` (or ``s3://``) -> ``("bucket", "a/b")``.

    Raises:
        ValueError: not an s3 / s3a URI.
    """
    for scheme in ("s3a://", "s3://", "s3n://"):
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme) :].partition("/")
            return bucket, key
    raise ValueError(f"'{uri}' is not an s3a:// URI")


def client(settings: Settings) -> Any:
    """A boto3 S3 client for ``settings.s3`` (endpoint, region, path-style, optional static keys)."""
    import boto3
    from botocore.config import Config

    s3 = settings.s3
    kwargs: dict[str, Any] = {
        "region_name": s3.region,
        "config": Config(s3={"addressing_style": "path" if s3.path_style_access else "auto"}),
    }
    if s3.endpoint_url:
        kwargs["endpoint_url"] = s3.endpoint_url
    if s3.access_key_id and s3.secret_access_key:
        kwargs["aws_access_key_id"] = s3.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
        if s3.session_token:
            kwargs["aws_session_token"] = s3.session_token.get_secret_value()
    log.debug("s3 client", extra=fields(endpoint=s3.endpoint_url, region=s3.region, static_keys=bool(s3.access_key_id)))
    return boto3.client("s3", **kwargs)


def upload_folder(s3_client: Any, folder: Path, uri: str) -> list[str]:
    """Upload every file under ``folder`` to ``uri`` keeping relative paths; returns the keys."""
    bucket, prefix = split_uri(uri)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(folder).as_posix()]))
        s3_client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def list_keys(s3_client: Any, uri: str) -> list[str]:
    """Every key under ``uri``, sorted."""
    bucket, prefix = split_uri(uri)
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return sorted(keys)
