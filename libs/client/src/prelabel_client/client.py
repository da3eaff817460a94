"""``PrelabelClient``: the dataset service's HTTP API, typed and async (httpx)."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from httpx_aiohttp import AiohttpTransport

from prelabel_client.errors import ClientError, ConflictError, MissingError
from prelabel_client.http import ServiceHttp
from prelabel_client.models import Dataset, Item, ItemPage
from prelabel_client.retry import RetryPolicy

MAX_PAGE_SIZE = 1000
"""The service's largest page."""


class PrelabelClient:
    """One project's view of the dataset service: datasets and items.

    Use as an async context manager (or call :meth:`aclose`). Every call sends
    ``Authorization: Bearer <api_key>``; error statuses raise :class:`ApiError`
    subclasses carrying the server's message, no answer raises
    :class:`ServiceUnreachableError` with the URL. The connection pool holds
    ``max_connections`` connections, so an uploader with that many files in
    flight never queues for a socket. ``retry`` retries the retry-safe requests;
    it is off by default because :class:`Uploader` retries whole uploads itself.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 60.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not api_key:
            raise ClientError("an API key is required (PRELABEL_API_KEY)")
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self.api = ServiceHttp(
            "dataset",
            base_url,
            api_key,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport or AiohttpTransport(limits=limits),
            retry=retry,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.api.aclose()

    def without_retry(self) -> PrelabelClient:
        """A view of this client (same connections) that never retries on its own."""
        view = copy.copy(self)
        view.api = self.api.with_retry(None)
        return view

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return self.api.base_url

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.api.request(method, path, **kwargs)

    # ------------------------------------------------------------------ project, datasets

    async def whoami(self) -> str:
        """The project id of the API key (checks the key)."""
        response = await self._request("GET", "/whoami")
        return str(response.json()["project_id"])

    async def list_datasets(self, name: str | None = None) -> list[Dataset]:
        """The project's datasets (only the one called ``name`` when given)."""
        params = {"name": name} if name is not None else None
        response = await self._request("GET", "/datasets", params=params)
        return [Dataset.model_validate(entry) for entry in response.json()]

    async def find_dataset(self, name: str) -> Dataset | None:
        """The dataset called ``name``, or ``None``."""
        found = [dataset for dataset in await self.list_datasets(name) if dataset.name == name]
        return found[0] if found else None

    async def get_dataset(self, dataset_id: str) -> Dataset:
        """One dataset by id, with its item count."""
        response = await self._request("GET", f"/datasets/{dataset_id}")
        return Dataset.model_validate(response.json())

    async def create_dataset(self, name: str, description: str = "") -> Dataset:
        """Create a dataset (409 if the name is taken)."""
        response = await self._request(
            "POST", "/datasets", json={"name": name, "description": description}
        )
        return Dataset.model_validate(response.json())

    async def dataset_by_name(self, name: str, *, create: bool = False) -> Dataset:
        """The dataset called ``name``; created when missing and ``create`` is set."""
        dataset = await self.find_dataset(name)
        if dataset is not None:
            return dataset
        if not create:
            raise MissingError(f"dataset {name!r} does not exist (use --create-dataset)")
        try:
            return await self.create_dataset(name)
        except ConflictError:
            # Another client created it between our lookup and our create.
            again = await self.find_dataset(name)
            if again is not None:
                return again
            raise

    # ------------------------------------------------------------------ items

    async def upload_file(
        self,
        dataset_id: str,
        content: bytes | Path,
        name: str | None = None,
        *,
        remote_dir: str = "/",
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Item:
        """Upload one file (multipart) and return the new item.

        ``idempotency_key`` (a fresh UUID when not given) makes retries safe: the
        service answers a repeated key with the item it created the first time.
        The content type is the service's business: it sniffs the bytes.
        """
        if isinstance(content, Path):
            name = name or content.name
            content = await asyncio.to_thread(content.read_bytes)
        if not name:
            raise ClientError("a file name is required when uploading bytes")
        form = {"dir": remote_dir}
        if metadata:
            form["metadata"] = json.dumps(metadata)
        response = await self._request(
            "POST",
            f"/datasets/{dataset_id}/items",
            files={"file": (name, content, "application/octet-stream")},
            data=form,
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )
        return Item.model_validate(response.json())

    async def query_items(
        self,
        dataset_id: str,
        filter: dict[str, Any] | None = None,
        *,
        sort: list[dict[str, Any]] | dict[str, Any] | None = None,
        page: int = 0,
        page_size: int = 100,
    ) -> ItemPage:
        """One page of the items matching a DQL ``filter``."""
        body: dict[str, Any] = {"filter": filter or {}, "page": page, "page_size": page_size}
        if sort is not None:
            body["sort"] = sort
        response = await self._request("POST", f"/datasets/{dataset_id}/items/query", json=body)
        return ItemPage.model_validate(response.json())

    async def iter_items(
        self,
        dataset_id: str,
        filter: dict[str, Any] | None = None,
        *,
        sort: list[dict[str, Any]] | dict[str, Any] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[Item]:
        """Every item matching ``filter``, page after page."""
        page = 0
        while True:
            result = await self.query_items(
                dataset_id, filter, sort=sort, page=page, page_size=page_size
            )
            for item in result.items:
                yield item
            if not result.has_next:
                return
            page += 1

    async def get_item(self, item_id: str) -> Item:
        """One item."""
        response = await self._request("GET", f"/items/{item_id}")
        return Item.model_validate(response.json())

    async def stream_item(self, item_id: str, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The item's bytes, chunk by chunk."""
        async with self.api.stream("GET", f"/items/{item_id}/stream") as response:
            async for chunk in response.aiter_bytes(chunk_size):
                yield chunk

    async def download_item(self, item_id: str) -> bytes:
        """The item's bytes, whole."""
        return b"".join([chunk async for chunk in self.stream_item(item_id)])
