"""Hand-built HTTP calls, kept only for ``tests/e2e/test_catalog_models.py`` until it
moves to the SDK (the demo itself uses :mod:`prelabel_client`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from prelabel_demo.results import Endpoints, StepFailedError


class Api:
    """One HTTP client per service; errors become :class:`StepFailedError` with the body."""

    def __init__(self, endpoints: Endpoints, timeout_s: float = 30.0) -> None:
        self.endpoints = endpoints
        self.api_key = ""
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s)
            for name, url in endpoints.urls().items()
        }

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        step: str,
        expect: Iterable[int] = (200,),
        admin: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Send one request; the decoded JSON answer (``None`` for an empty one)."""
        client = self._clients[service]
        key = self.endpoints.admin_key if admin else self.api_key
        try:
            response = await client.request(
                method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise StepFailedError(
                step,
                f"{service} at {client.base_url} did not answer {method} {path}: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        if response.status_code not in set(expect):
            raise StepFailedError(
                step,
                f"{service} answered {method} {path} with HTTP {response.status_code}",
                body=response.text[:4000],
            )
        return response.json() if response.content else None
