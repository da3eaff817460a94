"""The SDK clients a request uses: one ``Prelabel`` per request with the signed-in key,
over connection pools shared by every request (one per service, built in the lifespan)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from prelabel_client.endpoints import SERVICES, Endpoints, Service
from prelabel_client.retry import RetryPolicy
from prelabel_client.sdk import Prelabel


class _Shared(httpx.AsyncBaseTransport):
    """A pool lent to a request's client: closing the client leaves it open."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class Clients:
    """Builds the per-request SDK clients; ``aclose`` closes the shared pools."""

    def __init__(self, endpoints: Endpoints, *, timeout_s: float, max_connections: int = 64):
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._pools: Mapping[Service, httpx.AsyncHTTPTransport] = {
            service: httpx.AsyncHTTPTransport(limits=limits) for service in SERVICES
        }
        self._lent: Mapping[Service, httpx.AsyncBaseTransport] = {
            service: _Shared(pool) for service, pool in self._pools.items()
        }

    def for_key(self, api_key: str) -> Prelabel:
        """An SDK client holding ``api_key`` (close it after the request)."""
        return Prelabel(
            self.endpoints,
            api_key,
            timeout_s=self.timeout_s,
            # A page waits on a person: one quick retry of safe requests, not a minute.
            retry=RetryPolicy(max_attempts=2, base_delay_s=0.2, max_delay_s=1.0),
            transports=self._lent,
        )

    async def aclose(self) -> None:
        """Close every shared pool."""
        for pool in self._pools.values():
            await pool.aclose()
