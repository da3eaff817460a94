"""The object store refuses anonymous access: without a signature no object is read,
written or listed (the local stack's SeaweedFS runs with ``-s3.config`` identities). The
services' signed requests still work."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from common.settings import S3SettingsMixin


async def test_anonymous_get_put_and_listing_are_refused(
    s3_settings: S3SettingsMixin, s3_bucket: str, bucket_client: Any
) -> None:
    key = f"anon/{uuid.uuid4().hex}.txt"
    await bucket_client.put_object(Bucket=s3_bucket, Key=key, Body=b"signed")
    base = s3_settings.s3_endpoint_url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        answers = {}
        for label, method, path, body in [
            ("get object", "GET", f"/{s3_bucket}/{key}", None),
            ("put object", "PUT", f"/{s3_bucket}/anon/put.txt", b"anonymous"),
            ("overwrite object", "PUT", f"/{s3_bucket}/{key}", b"anonymous"),
            ("list bucket", "GET", f"/{s3_bucket}/", None),
            ("list buckets", "GET", "/", None),
            ("delete object", "DELETE", f"/{s3_bucket}/{key}", None),
        ]:
            async with http.request(method, base + path, data=body) as response:
                answers[label] = (response.status, await response.text())

    for label, (status, text) in answers.items():
        assert status == 403, f"{label}: {status} {text[:200]}"
        assert "AccessDenied" in text, label
    # Nothing changed: the signed client still reads what it wrote, and only that.
    stored = await bucket_client.get_object(Bucket=s3_bucket, Key=key)
    async with stored["Body"] as stream:
        assert await stream.read() == b"signed"
    listing = await bucket_client.list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listing.get("Contents", [])] == [key]
