"""The annotation service's task API, as pipelines need it: does a task exist in the
caller's project, and which dataset is it on. Read with the caller's own API key, so a
pipeline only ever names tasks of its own project."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from trigger_router_service.adapters.datasets import UpstreamError
from trigger_router_service.domain.errors import RouterError


@dataclass(frozen=True)
class TaskRef:
    """What a pipeline checks of a labeling task."""

    id: str
    dataset_id: str


class TaskClient:
    """Reads labeling tasks from the annotation service on behalf of a caller."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=30.0, transport=transport)

    @property
    def base_url(self) -> str:
        """Where the annotation service answers."""
        return str(self._http.base_url)

    @base_url.setter
    def base_url(self, url: str) -> None:
        # A stack that starts the annotation service after the router points it here.
        self._http.base_url = httpx.URL(url)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def task(self, authorization: str, task_id: str) -> TaskRef | None:
        """The task if the caller's project has it, else ``None``."""
        try:
            response = await self._http.get(
                f"/tasks/{task_id}", headers={"Authorization": authorization}
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"annotation service unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            raise RouterError("the annotation service rejected the API key")
        if response.status_code >= 400:
            raise UpstreamError(f"annotation service answered {response.status_code}")
        body = response.json()
        return TaskRef(id=str(body["id"]), dataset_id=str(body["dataset_id"]))
