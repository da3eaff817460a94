"""Reading item blobs from S3 on the predict hot path.

A worker reads one object per request. Through aiobotocore each GET costs several
milliseconds of CPU (request building, endpoint rules, user-agent strings, response
parsing), which on a small machine caps a worker at a few hundred predictions per
second. Reading is all a worker does with S3, so it signs plain ``GET``s itself
(AWS Signature Version 4, path-style URLs, which every S3 server accepts) over one
pooled aiohttp session: a fraction of a millisecond each.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import aiohttp

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class BlobMissingError(Exception):
    """The object does not exist."""


class BlobReadError(Exception):
    """S3 answered with an error other than "no such key", or did not answer."""


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign_get(
    *,
    host: str,
    path: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """Headers of a SigV4-signed ``GET`` of ``path`` (already URI-encoded) on ``host``."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    canonical_headers = f"host:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{amz_date}\n"
    signed_headers = "host;x-amz-content-sha256;x-amz-date"
    canonical_request = "\n".join(
        ["GET", path, "", canonical_headers, signed_headers, EMPTY_SHA256]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret_key).encode(), day)
    key = _hmac(_hmac(_hmac(key, region), "s3"), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": EMPTY_SHA256,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        ),
    }


class BlobReader:
    """``GET`` objects of one bucket."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        max_connections: int = 64,
        timeout_seconds: float = 30.0,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._bucket = bucket
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            auto_decompress=False,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`BlobMissingError` or :class:`BlobReadError`."""
        path = f"{self._prefix}/{quote(self._bucket)}/{quote(key, safe='/-_.~')}"
        headers = sign_get(
            host=self._host,
            path=path,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self._region,
            now=datetime.now(UTC),
        )
        try:
            async with self._session.get(self._base + path, headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BlobReadError(f"S3 GET {key}: {type(exc).__name__}: {exc}") from exc
        if status == 200:
            return body
        if status == 404:
            raise BlobMissingError(key)
        raise BlobReadError(f"S3 GET {key} answered {status}: {body[:200]!r}")
