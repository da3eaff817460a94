"""Reading item blobs from S3 on the predict hot path.

A worker reads one object per request. Through aiobotocore each GET costs several
milliseconds of CPU (request building, endpoint rules, user-agent strings, response
parsing), which on a small machine caps a worker at a few hundred predictions per
second. Reading is all a worker does with S3, so it sends plain path-style ``GET``s
(which every S3 server accepts) over one pooled aiohttp session, signed by botocore's
own SigV4 signer without the rest of the client pipeline: a fraction of a
millisecond each.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class BlobMissingError(Exception):
    """The object does not exist."""


class BlobReadError(Exception):
    """S3 answered with an error other than "no such key", or did not answer."""


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

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`BlobMissingError` or :class:`BlobReadError`."""
        path = f"{self._prefix}/{quote(self._bucket)}/{quote(key, safe='/-_.~')}"
        request = AWSRequest(method="GET", url=self._base + path)
        self._signer.add_auth(request)
        headers = dict(request.headers.items())
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
