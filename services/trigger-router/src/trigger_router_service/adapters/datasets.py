"""The dataset service's HTTP API, as browser-style predict needs it.

The router has no item store: items picked by id or by a DQL filter are read from
the dataset service with the caller's own API key, so a request only ever sees the
caller's project's items.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from common.contracts import ItemSnapshot
from trigger_router_service.domain.errors import NotFoundError, RouterError


class UpstreamError(RouterError):
    """The dataset service failed to answer."""

    status = 502


class DatasetClient:
    """Reads items from the dataset service on behalf of a caller."""

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 16,
        page_size: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=30.0, transport=transport)
        self._concurrency = concurrency
        self._page_size = page_size

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def items_by_id(self, authorization: str, ids: list[str]) -> list[ItemSnapshot]:
        """The items, in the order given; 404 naming every id the caller cannot see."""
        limit = asyncio.Semaphore(self._concurrency)

        async def one(item_id: str) -> ItemSnapshot | None:
            async with limit:
                response = await self._get(f"/items/{item_id}", authorization)
            if response.status_code == 404:
                return None
            self._check(response)
            return ItemSnapshot.model_validate(response.json())

        found = await asyncio.gather(*(one(i) for i in ids))
        missing = [i for i, item in zip(ids, found, strict=True) if item is None]
        if missing:
            shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise NotFoundError(f"{len(missing)} item(s) not found: {shown}")
        return [item for item in found if item is not None]

    async def has_dataset(self, authorization: str, dataset_id: str) -> bool:
        """Whether the caller's project has the dataset."""
        response = await self._get(f"/datasets/{dataset_id}", authorization)
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    async def first_match(
        self, authorization: str, dataset_id: str, filter_: dict[str, Any]
    ) -> tuple[int, ItemSnapshot | None]:
        """How many of the dataset's items match the DQL filter, and the first of them."""
        try:
            response = await self._http.post(
                f"/datasets/{dataset_id}/items/query",
                json={"filter": filter_, "page": 0, "page_size": 1},
                headers={"Authorization": authorization},
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"dataset service unreachable: {exc}") from exc
        if response.status_code == 404:
            raise NotFoundError(f"dataset {dataset_id} not found")
        if response.status_code == 400:
            detail = response.json().get("detail")
            message = detail.get("message") if isinstance(detail, dict) else detail
            raise RouterError(f"invalid filter: {message}")
        self._check(response)
        body = response.json()
        items = [ItemSnapshot.model_validate(i) for i in body["items"]]
        return int(body["total_count"]), (items[0] if items else None)

    async def query(
        self, authorization: str, dataset_id: str, filter_: dict[str, Any], limit: int
    ) -> list[ItemSnapshot]:
        """Every item of the dataset matching the DQL filter (at most ``limit``: more is a 400)."""
        items: list[ItemSnapshot] = []
        page = 0
        while True:
            try:
                response = await self._http.post(
                    f"/datasets/{dataset_id}/items/query",
                    json={"filter": filter_, "page": page, "page_size": self._page_size},
                    headers={"Authorization": authorization},
                )
            except httpx.HTTPError as exc:
                raise UpstreamError(f"dataset service unreachable: {exc}") from exc
            if response.status_code == 404:
                raise NotFoundError(f"dataset {dataset_id} not found")
            if response.status_code == 400:
                detail = response.json().get("detail")
                message = detail.get("message") if isinstance(detail, dict) else detail
                raise RouterError(f"invalid filter: {message}")
            self._check(response)
            body = response.json()
            if body["total_count"] > limit:
                raise RouterError(
                    f"the filter matches {body['total_count']} items; a batch takes at most {limit}"
                )
            items += [ItemSnapshot.model_validate(i) for i in body["items"]]
            if not body["has_next"]:
                return items
            page += 1

    async def _get(self, path: str, authorization: str) -> httpx.Response:
        try:
            return await self._http.get(path, headers={"Authorization": authorization})
        except httpx.HTTPError as exc:
            raise UpstreamError(f"dataset service unreachable: {exc}") from exc

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code == 401:
            raise RouterError("the dataset service rejected the API key")
        if response.status_code >= 400:
            raise UpstreamError(f"dataset service answered {response.status_code}")
