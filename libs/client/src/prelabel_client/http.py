"""``ServiceHttp``: one service's HTTP API as the SDK calls it.

It sends the project key, turns error statuses into :class:`~prelabel_client.errors.ApiError`
subclasses with the service's message, turns a missing answer into
:class:`~prelabel_client.errors.ServiceUnreachableError` naming the service's URL, and
retries transient failures of the requests that are safe to send twice: GET, HEAD and
PUT, and any request carrying an ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from prelabel_client.errors import ApiError, ServiceUnreachableError
from prelabel_client.retry import RetryPolicy, is_transient

SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "OPTIONS"})
"""Methods whose repetition changes nothing the first request did not."""


def is_retry_safe(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether sending this request again cannot do the work twice."""
    if method.upper() in SAFE_METHODS:
        return True
    return any(name.lower() == "idempotency-key" for name in headers or {})


class ServiceHttp:
    """An httpx client bound to one service's base URL and the project key.

    ``retry`` (``None``: never retry) applies to retry-safe requests only; a request
    may opt out with ``retry=False``.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 60.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self.retry = retry
        self._sleep = sleep
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=limits,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        """The service's base URL (no trailing slash)."""
        return str(self.http.base_url).rstrip("/")

    def with_retry(self, retry: RetryPolicy | None) -> ServiceHttp:
        """A view of this client (same connection pool) with another retry policy."""
        view = copy.copy(self)
        view.retry = retry
        return view

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; the response of a 2xx/3xx status, else an ``ApiError``."""
        policy = self.retry if retry is not False else None
        if policy is None or not is_retry_safe(method, headers):
            return await self._once(method, path, headers=headers, **kwargs)
        attempt = 1
        while True:
            try:
                return await self._once(method, path, headers=headers, **kwargs)
            except ApiError as exc:
                if not is_transient(exc) or attempt >= policy.max_attempts:
                    raise
                await self._sleep(policy.delay(attempt, exc))
                attempt += 1

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer (``None`` for an empty one)."""
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed response (read its body with ``aiter_bytes``); errors raised as above."""
        try:
            async with self.http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ApiError.from_response(response, self.service)
                yield response
        except httpx.UnsupportedProtocol:
            raise  # a bad URL in the configuration, not a service that is away
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc

    def unreachable(self, exc: BaseException) -> ServiceUnreachableError:
        """The error for a request that got no answer."""
        return ServiceUnreachableError(self.service, self.base_url, exc)

    async def _once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.UnsupportedProtocol:
            raise  # a bad URL in the configuration, not a service that is away
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if response.status_code >= 400:
            raise ApiError.from_response(response, self.service)
        return response
