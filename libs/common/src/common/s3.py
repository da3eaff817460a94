"""S3 access (aiobotocore): client factory and content-addressed blob helpers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from common.settings import S3SettingsMixin


@contextlib.asynccontextmanager
async def s3_client(
    endpoint_url: str,
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    *,
    max_pool_connections: int = 50,
) -> AsyncIterator[Any]:
    """Yield an aiobotocore S3 client; path-style addressing works with any S3 server."""
    session = get_session()
    config = AioConfig(
        s3={"addressing_style": "path"},
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": 5, "mode": "standard"},
        signature_version="s3v4",
    )
    async with session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    ) as client:
        yield client


def client_from_settings(settings: S3SettingsMixin) -> contextlib.AbstractAsyncContextManager[Any]:
    """Build an S3 client context manager from an S3 settings mixin."""
    return s3_client(
        settings.s3_endpoint_url, settings.s3_access_key, settings.s3_secret_key, settings.s3_region
    )


async def ensure_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` unless it exists already."""
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=bucket)


def blob_key(sha256: str) -> str:
    """Content-addressed key of a blob: identical content is stored once."""
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


async def object_exists(client: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` exists in ``bucket``."""
    try:
        await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


async def get_bytes(client: Any, bucket: str, key: str) -> bytes:
    """Read a whole object."""
    response = await client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as stream:
        data: bytes = await stream.read()
    return data


async def delete_bucket(client: Any, bucket: str) -> None:
    """Delete every object of ``bucket``, then the bucket."""
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    await client.delete_bucket(Bucket=bucket)
