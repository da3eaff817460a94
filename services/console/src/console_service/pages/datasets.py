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


THUMBNAIL_SIZE = 256
"""Thumbnails the grid asks for: twice the tile's height, sharp on dense screens."""
MAX_TREE_DEPTH = 8
"""Levels of the directory tree opened along the selected directory."""


async def _grid(
    request: Request,
    client: Prelabel,
    dataset_id: str,
    filter_text: str,
    directory: str,
    page: int,
    cursor: str | None = None,
) -> dict[str, Any]:
    """What the grid shows: a page of items, or the filter's error inline.

    Pages are sought by cursor (keyset): the next and previous links carry the cursor the
    dataset service gave, so page 1,000 costs what page 1 does. ``page`` is only the
    number shown; a link with a page number and no cursor (an old bookmark) is answered
    by number once, its links lead on by cursor.
    """
    page_size = request.app.state.settings.page_size
    context: dict[str, Any] = {
        "filter_text": filter_text,
        "directory": directory,
        "page": page,
        "items": [],
        "total": 0,
        "has_next": False,
        "error": None,
        "thumbnail_size": THUMBNAIL_SIZE,
    }
    try:
        filter_ = with_directory(parse_filter(filter_text), directory)
        if cursor is None and page > 0:
            found = await client.items.query(dataset_id, filter_, page=page, page_size=page_size)
        else:
            found = await client.items.seek(dataset_id, filter_, cursor=cursor, page_size=page_size)
    except FormError as exc:
        context["error"] = str(exc)
        return context
    except ValidationError as exc:
        # The dataset service's own words: the same as the API and the CLI show.
        context["error"] = exc.message
        return context
    query = {"filter": filter_text, "dir": directory}
    shown = (
        found.page if cursor is None and page > 0 else (0 if found.prev_cursor is None else page)
    )
    context |= {
        "page": shown,
        "items": found.items,
        "total": found.total_count,
        "has_next": found.has_next,
        "prev_query": urlencode({**query, "cursor": found.prev_cursor, "page": max(shown - 1, 0)})
        if found.prev_cursor
        else None,
        "next_query": urlencode({**query, "cursor": found.next_cursor, "page": shown + 1})
        if found.next_cursor
        else None,
    }
    return context


def tree_path(directory: str) -> list[str]:
    """The directories to open in the tree for the ``dir`` box's value: ``/a/b/**`` or
    ``/a/b`` opens ``/``, ``/a`` and ``/a/b``; a glob opens what precedes its first
    wildcard."""
    plain = directory.strip().removesuffix("/**")
    for wildcard in "*?[{":
        plain = plain.split(wildcard, 1)[0]
    parts = [p for p in plain.split("/") if p][:MAX_TREE_DEPTH]
    return ["/"] + ["/" + "/".join(parts[: n + 1]) for n in range(len(parts))]


def tree_filter(path: str) -> str:
    """The ``dir`` value a click on directory ``path`` puts in the box: it and below."""
    return "" if path == "/" else f"{path}/**"


async def _tree(client: Prelabel, dataset_id: str, directory: str) -> dict[str, Any]:
    """The directory tree beside the grid: the root's subdirectories, and those of each
    directory on the way to the selected one (one listing per level, concurrently)."""
    opened = tree_path(directory)
    listings = await asyncio.gather(
        *(client.datasets.directories(dataset_id, parent) for parent in opened),
        return_exceptions=True,
    )
    by_parent = {
        parent: listing
        for parent, listing in zip(opened, listings, strict=True)
        if not isinstance(listing, BaseException)
    }
    failed = [x for x in listings if isinstance(x, BaseException)]
    if failed and "/" not in by_parent:
        first = failed[0]
        if isinstance(first, NotFoundError | ValidationError):
            return {"root": None, "selected": directory}
        raise first

    def node(path: str, name: str, count: int, has_children: bool) -> dict[str, Any]:
        listing = by_parent.get(path)
        children = (
            [node(c.dir, c.name, c.item_count, c.has_children) for c in listing.children]
            if listing is not None
            else None
        )
        return {
            "dir": path,
            "name": name,
            "item_count": count,
            "has_children": has_children,
            "children": children,
            "truncated": bool(listing and listing.truncated),
            "filter": tree_filter(path),
        }

    root = by_parent["/"]
    return {
        "root": node("/", "/", root.item_count, bool(root.children)),
        "selected": directory.strip(),
    }


@router.get("/datasets/{dataset_id}")
async def browser(
    request: Request,
    client: Client,
    dataset_id: str,
    filter: Annotated[str, Query(max_length=20_000)] = "",
    dir: Annotated[str, Query(max_length=1000)] = "",
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    dataset, services = await asyncio.gather(
        client.datasets.get(dataset_id), client.services.list()
    )
    grid, tree = await asyncio.gather(
        _grid(request, client, dataset_id, filter, dir, page, cursor or None),
        _tree(client, dataset_id, dir),
    )
    ready = [s for s in services if s.status == "ready"]
    return render(request, "browser.html", dataset=dataset, services=ready, tree=tree, **grid)


@router.get("/datasets/{dataset_id}/grid")
async def grid(
    request: Request,
    client: Client,
    dataset_id: str,
    filter: Annotated[str, Query(max_length=20_000)] = "",
    dir: Annotated[str, Query(max_length=1000)] = "",
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    dataset = await client.datasets.get(dataset_id)
    context = await _grid(request, client, dataset_id, filter, dir, page, cursor or None)
    return render(
        request, "_grid.html", 400 if context["error"] else 200, dataset=dataset, **context
    )


@router.get("/datasets/{dataset_id}/tree")
async def tree(
    request: Request,
    client: Client,
    dataset_id: str,
    filter: Annotated[str, Query(max_length=20_000)] = "",
    dir: Annotated[str, Query(max_length=1000)] = "",
) -> Response:
    dataset = await client.datasets.get(dataset_id)
    context = await _tree(client, dataset_id, dir)
    return render(
        request, "_dirtree.html", dataset=dataset, tree=context, filter_text=filter, directory=dir
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
        tree_context = await _tree(client, dataset_id, dir)
        return render(
            request, "browser.html", 400, dataset=dataset, services=services,
            predict_error=message, tree=tree_context, **grid_context,
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


@router.get("/items/{item_id}/thumbnail")
async def item_thumbnail(
    request: Request,
    client: Client,
    item_id: str,
    size: Annotated[int, Query(ge=1, le=4096)] = THUMBNAIL_SIZE,
) -> Response:
    """The item's thumbnail from the dataset service, with the signed-in key held here:
    the browser sends its ``If-None-Match`` and gets the service's ETag, Cache-Control
    and 304 back, so a warm grid costs one small request per tile or none."""
    thumbnail = await client.items.thumbnail(
        item_id, size, if_none_match=request.headers.get("if-none-match")
    )
    headers = {"X-Content-Type-Options": "nosniff"}
    if thumbnail.etag:
        headers["ETag"] = thumbnail.etag
    if thumbnail.cache_control:
        headers["Cache-Control"] = thumbnail.cache_control
    if thumbnail.not_modified:
        return Response(status_code=304, headers=headers)
    return Response(
        thumbnail.content, media_type=thumbnail.content_type or "image/webp", headers=headers
    )
