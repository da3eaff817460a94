"""Model-serving's HTTP API, as pipelines need it: what items a model service's model
accepts. Read with the caller's own API key, so a pipeline only ever learns about its
own project's services and models."""

from __future__ import annotations

from typing import Any

import httpx

from trigger_router_service.adapters.datasets import UpstreamError
from trigger_router_service.domain.errors import RouterError


class ModelClient:
    """Reads model services and models from model-serving on behalf of a caller.

    Without a base URL (``model_serving_url`` unset) nothing is read and every model's
    input type is unknown: the pipeline checks that need it are skipped.
    """

    def __init__(
        self, base_url: str | None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url or "", timeout=30.0, transport=transport)
        self._configured = base_url is not None

    @property
    def base_url(self) -> str | None:
        """Where model-serving answers (``None``: not configured)."""
        return str(self._http.base_url) if self._configured else None

    @base_url.setter
    def base_url(self, url: str) -> None:
        # A stack that starts model-serving after the router points it here.
        self._http.base_url = httpx.URL(url)
        self._configured = True

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def input_type(self, authorization: str, service_id: str) -> str | None:
        """The input type (``image``, ``text`` ...) of the model the caller's service
        runs; ``None`` when model-serving is not configured or does not know the service
        (the router's own ledger decides whether the service exists)."""
        if not self._configured:
            return None
        service = await self._get(f"/services/{service_id}", authorization)
        if service is None:
            return None
        model = await self._get(f"/models/{service['model_id']}", authorization)
        if model is None:
            return None
        input_type = (model.get("spec") or {}).get("input_type", "image")
        return str(input_type)

    async def _get(self, path: str, authorization: str) -> dict[str, Any] | None:
        try:
            response = await self._http.get(path, headers={"Authorization": authorization})
        except httpx.HTTPError as exc:
            raise UpstreamError(f"model-serving unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            raise RouterError("model-serving rejected the API key")
        if response.status_code >= 400:
            raise UpstreamError(f"model-serving answered {response.status_code}")
        body: dict[str, Any] = response.json()
        return body
