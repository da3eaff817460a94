"""Object reads and writes on hot paths (predict workers, uploads, ingest).

Through aiobotocore each GET or PUT costs several milliseconds of CPU (request
building, endpoint rules, user-agent strings, response parsing), which on a small
machine caps a worker or an upload endpoint at a few hundred objects per second.
These paths only get and put whole objects, so they send plain path-style requests
(which every S3 server accepts) over one pooled aiohttp session, signed by
botocore's own SigV4 signer without the rest of the client pipeline: a fraction of
a millisecond each. Everything else (buckets, listings, deletes, streaming) uses
the aiobotocore client of ``common.s3``.
"""

from __future__ import annotations

import base64
import zlib
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from common.settings import S3SettingsMixin

_UNSIGNED_PAYLOAD = Config(s3={"payload_signing_enabled": False})


class BlobMissingError(Exception):
    """The object does not exist."""


class BlobReadError(Exception):
    """S3 answered with an error other than "no such key", or did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """S3's HTTP status; ``None`` when it did not answer (connection error, timeout)."""

    @property
    def transient(self) -> bool:
        """Whether another attempt may succeed (no answer, 5xx, or throttled)."""
        return self.status is None or self.status >= 500 or self.status == 429


def blob_store(settings: S3SettingsMixin, max_connections: int = 64) -> BlobStore:
    """A store for the bucket of an S3 settings mixin."""
    return BlobStore(
        settings.s3_endpoint_url,
        settings.s3_bucket,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        region=settings.s3_region,
        max_connections=max_connections,
    )


class BlobStore:
    """``GET`` and ``PUT`` whole objects of one bucket."""

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
        self._prefix = parts.path.rstrip("/")
        self._bucket = bucket
        self._signer = S3SigV4Auth(Credentials(access_key, secret_key), "s3", region)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            auto_decompress=False,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    def _signed(
        self, method: str, key: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        url = f"{self._base}{self._prefix}/{quote(self._bucket)}/{quote(key, safe='/-_.~')}"
        request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
        request.context["client_config"] = _UNSIGNED_PAYLOAD
        self._signer.add_auth(request)
        return url, dict(request.headers.items())

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        """Write the object; :class:`BlobReadError` when S3 refuses or does not answer.

        The body is not part of the signature (``UNSIGNED-PAYLOAD``); its CRC32 travels
        in ``x-amz-checksum-crc32``, which is signed, and S3 refuses the object if the
        bytes it received do not match. That is the integrity check S3 SDKs use by
        default; a signed payload would make S3 hash every byte with SHA-256 as well.
        """
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        url, headers = self._signed(
            "PUT", key, body, {"Content-Type": content_type, "x-amz-checksum-crc32": crc}
        )
        try:
            async with self._session.put(url, data=body, headers=headers) as response:
                status = response.status
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BlobReadError(f"S3 PUT {key}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise BlobReadError(f"S3 PUT {key} answered {status}: {answer[:200]!r}", status)

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`BlobMissingError` or :class:`BlobReadError`."""
        url, headers = self._signed("GET", key)
        try:
            async with self._session.get(url, headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BlobReadError(f"S3 GET {key}: {type(exc).__name__}: {exc}") from exc
        if status == 200:
            return body
        if status == 404:
            raise BlobMissingError(key)
        raise BlobReadError(f"S3 GET {key} answered {status}: {body[:200]!r}", status)
