"""common.blobs against the real S3 (SeaweedFS): round trips, missing keys, and S3
refusing a body that does not match the checksum the store signed."""

from __future__ import annotations

import base64
import zlib
from collections.abc import AsyncIterator

import pytest

from common.blobs import BlobMissingError, BlobReadError, BlobStore
from common.settings import S3SettingsMixin


@pytest.fixture
async def store(s3_settings: S3SettingsMixin, s3_bucket: str) -> AsyncIterator[BlobStore]:
    blobs = BlobStore(
        s3_settings.s3_endpoint_url,
        s3_bucket,
        access_key=s3_settings.s3_access_key,
        secret_key=s3_settings.s3_secret_key,
        region=s3_settings.s3_region,
    )
    yield blobs
    await blobs.close()


async def test_put_then_get_returns_the_same_bytes(store: BlobStore) -> None:
    body = bytes(range(256)) * 200

    await store.put("blobs/a b/ü.bin", body, "application/octet-stream")

    assert await store.get("blobs/a b/ü.bin") == body


async def test_missing_key_is_its_own_error(store: BlobStore) -> None:
    with pytest.raises(BlobMissingError):
        await store.get("blobs/never-written")


async def test_s3_refuses_a_body_that_does_not_match_its_signed_checksum(
    store: BlobStore,
) -> None:
    # Sign (and checksum) one body, then send another, as a corrupting network would.
    crc = base64.b64encode(zlib.crc32(b"expected").to_bytes(4, "big")).decode()
    url, headers = store._signed("PUT", "blobs/corrupt", b"expected", {"x-amz-checksum-crc32": crc})

    async with store._session.put(url, data=b"received", headers=headers) as response:
        status, answer = response.status, await response.read()

    assert status == 400
    assert b"BadDigest" in answer
    with pytest.raises(BlobMissingError):
        await store.get("blobs/corrupt")


async def test_refusals_carry_the_status_so_callers_know_not_to_retry(
    s3_settings: S3SettingsMixin,
) -> None:
    # Credentials the server does not know: refused (403), and final. (A missing bucket is
    # no refusal on SeaweedFS with credentials: an identity allowed to create buckets gets
    # one on its first put.)
    wrong_key = BlobStore(
        s3_settings.s3_endpoint_url,
        s3_settings.s3_bucket,
        access_key=s3_settings.s3_access_key,
        secret_key="not-the-secret",
        region=s3_settings.s3_region,
    )
    try:
        with pytest.raises(BlobReadError) as refused:
            await wrong_key.put("blobs/x", b"data", "application/octet-stream")
    finally:
        await wrong_key.close()

    assert refused.value.status == 403
    assert not refused.value.transient
