"""Whether a dataset is the caller's, asked of the dataset service that owns datasets.

A task or an export names a dataset by id; the annotation service never reads the
dataset service's tables, so it asks ``GET /datasets/{id}`` with the caller's own key:
another project's dataset answers 404 there, and so here.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import HTTPException

from annotation_service.domain import NotFoundError


class Datasets:
    """Client of the dataset service's ``GET /datasets/{id}``."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None):
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5.0)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def check(self, api_key: str, dataset_id: str) -> None:
        """Return when ``dataset_id`` is the key's project's; else raise a 404."""
        try:
            answer = await self._client.get(
                f"/datasets/{quote(dataset_id, safe='')}",
                headers={"Authorization": f"Bearer {api_key}"},
            )
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"cannot check the dataset: {exc}") from exc
        if answer.status_code == 200:
            return
        if answer.status_code in (404, 422):
            raise NotFoundError("dataset", dataset_id)
        raise HTTPException(503, f"the dataset check answered {answer.status_code}")
