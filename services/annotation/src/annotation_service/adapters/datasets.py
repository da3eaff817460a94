"""Whether an object another service owns is the caller's, asked of that service.

A task or an export names a dataset by id, and a task may name the model services whose
predictions it takes; the annotation service never reads other services' tables, so it
asks ``GET /datasets/{id}`` (dataset service) or ``GET /services/{id}`` (model-serving)
with the caller's own key: another project's object answers 404 there, and so here.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import HTTPException

from annotation_service.domain import NotFoundError


class OwnedObjects:
    """Client of another service's ``GET <path>/{id}``, answering whether it is the key's."""

    noun = "object"
    path = "/"

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None):
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5.0)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def check(self, api_key: str, object_id: str) -> None:
        """Return when ``object_id`` is the key's project's; else raise a 404."""
        try:
            answer = await self._client.get(
                f"{self.path}/{quote(object_id, safe='')}",
                headers={"Authorization": f"Bearer {api_key}"},
            )
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"cannot check the {self.noun}: {exc}") from exc
        if answer.status_code == 200:
            return
        if answer.status_code in (404, 422):
            raise NotFoundError(self.noun, object_id)
        raise HTTPException(503, f"the {self.noun} check answered {answer.status_code}")


class Datasets(OwnedObjects):
    """The dataset service's ``GET /datasets/{id}``."""

    noun = "dataset"
    path = "/datasets"


class ModelServices(OwnedObjects):
    """Model-serving's ``GET /services/{id}``."""

    noun = "model service"
    path = "/services"
