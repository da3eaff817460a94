"""The dataset browser: datasets, the item grid with DQL and directory filters, Predict
on a selection, batches with live progress, the item page and the item's image."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response, StreamingResponse

from console_service.domain import FormError, parse_filter, shapes_of, with_directory
from console_service.session import Session
from console_service.web import Client, clients_of, redirect, render, signed_in_session
from prelabel_client.errors import ApiError, NotFoundError, ValidationError
from prelabel_client.models import FINAL_STATUSES
from prelabel_client.sdk import Prelabel

router = APIRouter()

MAX_PAGE = 100_000


@router.get("/datasets")
async def datasets(request: Request, client: Client) -> Response:
    found = await client.datasets.list()
    return render(request, "datasets.html", datasets=found)


async def _grid(
    request: Request, client: Prelabel, dataset_id: str, filter_text: str, directory: str, page: int
) -> dict[str, Any]:
    """What the grid shows: a page of items, or the filter's error inline."""
    page_size = request.app.state.settings.page_size
    context: dict[str, Any] = {
        "filter_text": filter_text,
        "directory": directory,
        "page": page,
        "items": [],
        "total": 0,
        "has_next": False,
        "error": None,
    }
    try:
        filter_ = with_directory(parse_filter(filter_text), directory)
        found = await client.items.query(dataset_id, filter_, page=page, page_size=page_size)
    except FormError as exc:
        context["error"] = str(exc)
        return context
    except ValidationError as exc:
        # The dataset service's own words: the same as the API and the CLI show.
        context["error"] = exc.message
        return context
    query = {"filter": filter_text, "dir": directory}
    context |= {
        "items": found.items,
        "total": found.total_count,
        "has_next": found.has_next,
        "directories": sorted({item.dir for item in found.items}),
        "prev_query": urlencode({**query, "page": page - 1}) if page > 0 else None,
        "next_query": urlencode({**query, "page": page + 1}) if found.has_next else None,
    }
    return context


@router.get("/datasets/{dataset_id}")
async def browser(
    request: Request,
    client: Client,
    dataset_id: str,
    filter: Annotated[str, Query(max_length=20_000)] = "",
    dir: Annotated[str, Query(max_length=1000)] = "",
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
) -> Response:
    dataset, services = await asyncio.gather(
        client.datasets.get(dataset_id), client.services.list()
    )
    grid = await _grid(request, client, dataset_id, filter, dir, page)
    ready = [s for s in services if s.status == "ready"]
    return render(request, "browser.html", dataset=dataset, services=ready, **grid)


@router.get("/datasets/{dataset_id}/grid")
async def grid(
    request: Request,
    client: Client,
    dataset_id: str,
    filter: Annotated[str, Query(max_length=20_000)] = "",
    dir: Annotated[str, Query(max_length=1000)] = "",
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
) -> Response:
    dataset = await client.datasets.get(dataset_id)
    context = await _grid(request, client, dataset_id, filter, dir, page)
    return render(
        request, "_grid.html", 400 if context["error"] else 200, dataset=dataset, **context
    )


@router.post("/datasets/{dataset_id}/predict")
async def predict(
    request: Request,
    client: Client,
    dataset_id: str,
    service_id: Annotated[str, Form(max_length=200)],
    scope: Annotated[str, Form()] = "selected",
    item_id: Annotated[list[str] | None, Form(max_length=10_000)] = None,
    filter: Annotated[str, Form(max_length=20_000)] = "",
    dir: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    await client.datasets.get(dataset_id)  # 404 for another project's dataset
    try:
        if scope == "filter":
            filter_ = with_directory(parse_filter(filter), dir)
            batch = await client.batches.predict(service_id, dataset_id=dataset_id, filter=filter_)
        else:
            if not item_id:
                raise FormError("select items first (click them), or predict on all matching")
            batch = await client.batches.predict(service_id, item_ids=item_id)
    except (FormError, ValidationError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        dataset = await client.datasets.get(dataset_id)
        services = [s for s in await client.services.list() if s.status == "ready"]
        grid_context = await _grid(request, client, dataset_id, filter, dir, 0)
        return render(
            request, "browser.html", 400, dataset=dataset, services=services,
            predict_error=message, **grid_context,
        )  # fmt: skip
    return redirect(request, f"/batches/{batch.id}")


@router.get("/batches/{batch_id}")
async def batch_page(request: Request, client: Client, batch_id: str) -> Response:
    batch = await client.batches.get(batch_id)
    return render(request, "batch.html", batch=batch, statuses=_statuses(batch.counts))


@router.get("/batches/{batch_id}/progress")
async def batch_progress(request: Request, client: Client, batch_id: str) -> Response:
    batch = await client.batches.get(batch_id)
    return render(request, "_batch_progress.html", batch=batch, statuses=_statuses(batch.counts))


def _statuses(counts: dict[str, int]) -> list[tuple[str, int]]:
    return [(status, count) for status, count in counts.items() if count]


def batch_done(batch: Any) -> bool:
    """Whether nothing of the batch is left to run."""
    return bool(batch.done) or all(s in FINAL_STATUSES for s, n in batch.counts.items() if n)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, client: Client, batch_id: str) -> Response:
    await client.batches.cancel(batch_id)
    return redirect(request, f"/batches/{batch_id}")


@router.post("/batches/{batch_id}/rerun-failed")
async def rerun_failed(request: Request, client: Client, batch_id: str) -> Response:
    batch = await client.batches.get(batch_id)
    failed = [
        execution.id
        async for execution in client.executions.iter(
            service_id=batch.service_id, status="failed", since=batch.created_at
        )
        if execution.batch_id == batch.id
    ]
    for execution_id in failed:
        await client.executions.rerun(execution_id)
    return redirect(request, f"/batches/{batch_id}")


@router.get("/items/{item_id}")
async def item_page(request: Request, client: Client, item_id: str) -> Response:
    item = await client.items.get(item_id)
    annotations, dataset = await asyncio.gather(
        client.annotations.list(item_id=item_id), client.datasets.get(item.dataset_id)
    )
    shapes = shapes_of(annotations)
    system = item.system
    return render(
        request, "item.html", item=item, dataset=dataset, shapes=shapes,
        width=system.width, height=system.height, user_metadata=item.metadata.get("user", {}),
    )  # fmt: skip


@router.get("/items/{item_id}/image")
async def item_image(request: Request, item_id: str) -> Response:
    """The item's bytes through the console (the browser never holds the key)."""
    session: Session = signed_in_session(request)
    assert session.api_key is not None
    sdk = clients_of(request).for_key(session.api_key)
    try:
        item = await sdk.items.get(item_id)
        system = item.system
        etag = f'"{system.sha256}"' if system.sha256 else None
        if etag and request.headers.get("if-none-match") == etag:
            await sdk.aclose()
            return Response(status_code=304, headers={"ETag": etag})
        mimetype = system.mimetype or "application/octet-stream"
        if not mimetype.startswith("image/"):
            raise NotFoundError(404, "this item is not an image", service="dataset")
        stream = sdk.dataset_client.stream_item(item_id)
        first = await anext(aiter(stream), b"")
    except BaseException:
        await sdk.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()
            await sdk.aclose()

    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if etag:
        headers["ETag"] = etag
    return StreamingResponse(body(), media_type=mimetype, headers=headers)
