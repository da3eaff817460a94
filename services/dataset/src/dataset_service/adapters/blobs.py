"""The S3 bucket that holds item blobs, under their content keys (``common.s3.blob_key``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from common.blobs import BlobStore
from common.s3 import object_exists


@dataclass(frozen=True)
class ItemBlobs:
    """Item blobs: writes and reads through ``common.blobs`` (pooled, signed HTTP),
    existence checks, deletes and streams through aiobotocore's client."""

    s3: Any
    """aiobotocore's S3 client (untyped)."""
    blobs: BlobStore
    bucket: str

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write a blob (content-addressed: writing the same bytes again changes nothing)."""
        await self.blobs.put(key, data, content_type)

    async def get(self, key: str) -> bytes:
        """A blob's bytes; raises ``common.blobs.BlobMissingError`` if there is none."""
        return await self.blobs.get(key)

    async def size(self, key: str) -> int | None:
        """The size of object ``key`` in bytes (a HEAD: nothing is read), ``None`` when
        the bucket has no such object."""
        try:
            head = await self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        """Whether the bucket holds ``key``."""
        return await object_exists(self.s3, self.bucket, key)

    async def delete(self, key: str) -> None:
        """Remove a blob; raises botocore's ``ClientError`` when S3 refuses."""
        await self.s3.delete_object(Bucket=self.bucket, Key=key)

    async def open(self, key: str) -> Any:
        """The S3 response for a blob (its ``Body`` streams)."""
        return await self.s3.get_object(Bucket=self.bucket, Key=key)
