"""Project API keys for services other than dataset.

The dataset service owns projects and keys. Other services never read its
tables: they ask its ``GET /whoami`` which project a key belongs to and cache the
answer briefly (keyed by a hash of the key, never the key itself). The cache is
bounded: a caller sending endless made-up keys evicts the oldest answers, it cannot
grow a service's memory.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated

import httpx
from fastapi import Header, HTTPException, Request

MAX_CACHED_KEYS = 10_000
"""Most key answers a service keeps (known and unknown keys together)."""


class KeyIntrospector:
    """Resolves API keys to project ids through the dataset service, with a TTL cache
    holding at most ``max_entries`` answers (least recently used evicted first)."""

    def __init__(
        self,
        base_url: str,
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = MAX_CACHED_KEYS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5.0)
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    @property
    def cached(self) -> int:
        """How many key answers are cached now."""
        return len(self._cache)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def project_of(self, key: str) -> str | None:
        """The key's project, or ``None`` for an unknown key."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(digest)
            return cached[1]
        try:
            response = await self._client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"cannot check the API key: {exc}") from exc
        if response.status_code == 401:
            project = None
        elif response.status_code == 200:
            project = str(response.json()["project_id"])
        else:
            raise HTTPException(503, f"key check answered {response.status_code}")
        self._cache[digest] = (now + self._ttl, project)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return project


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or a 401."""
    if not authorization:
        raise HTTPException(401, "missing Authorization header (expected 'Bearer <api key>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization must be 'Bearer <api key>'")
    return token.strip()


def project_dependency(
    introspector_of: Callable[[Request], KeyIntrospector],
) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency giving the caller's project id (401 when the key is unknown)."""

    async def project_id(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> str:
        project = await introspector_of(request).project_of(bearer_token(authorization))
        if project is None:
            raise HTTPException(401, "invalid API key")
        return project

    return project_id
