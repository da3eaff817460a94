"""DQL queries over a dataset's items: ``POST .../items/query`` and the ``GET`` form."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import ValidationError

from dataset_service.api.dependencies import Project_, Repo, settings_of
from dataset_service.api.schemas import ItemPage, ItemQuery
from dataset_service.repository import DirectoryListing, Repository
from dataset_service.usecases import queries

router = APIRouter()


async def _query(
    request: Request, dataset_id: str, project: str, repository: Repository, query: ItemQuery
) -> ItemPage:
    settings = settings_of(request)
    page = await queries.query_items(
        repository,
        project,
        dataset_id,
        filter_=query.filter,
        sort=query.sort,
        page=query.page,
        page_size=query.page_size,
        max_page_size=settings.max_page_size,
        max_depth=settings.dql_max_depth,
        cursor=query.cursor,
    )
    return ItemPage(
        items=page.items,
        total_count=page.total_count,
        page=page.page,
        page_size=page.page_size,
        has_next=page.has_next,
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
    )


@router.post("/datasets/{dataset_id}/items/query", tags=["items"])
async def query_items(
    request: Request, dataset_id: str, body: ItemQuery, project: Project_, repository: Repo
) -> ItemPage:
    """List items matching a DQL filter, sorted and paged."""
    return await _query(request, dataset_id, project, repository, body)


@router.get("/datasets/{dataset_id}/directories", tags=["items"])
async def list_directories(
    request: Request,
    dataset_id: str,
    project: Project_,
    repository: Repo,
    parent: Annotated[
        str, Query(max_length=4096, description="The directory whose subdirectories to list.")
    ] = "/",
) -> DirectoryListing:
    """A directory's subdirectories with their item counts (visible items, in each
    subdirectory and below it), and the items in the directory itself."""
    return await queries.list_directories(
        repository, project, dataset_id, parent=parent, limit=settings_of(request).max_directories
    )


@router.get("/datasets/{dataset_id}/items", tags=["items"])
async def list_items(
    request: Request,
    dataset_id: str,
    project: Project_,
    repository: Repo,
    filter: Annotated[str | None, Query(description="DQL filter as JSON.")] = None,
    sort: Annotated[str | None, Query(description="Sort spec as JSON.")] = None,
    page: Annotated[int, Query(ge=0)] = 0,
    page_size: Annotated[int, Query(ge=1)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=4096, description="A page's next_cursor or prev_cursor.")
    ] = None,
) -> ItemPage:
    """List items (``filter`` and ``sort`` as JSON in the query string)."""
    try:
        parsed_filter: Any = json.loads(filter) if filter else {}
        parsed_sort = json.loads(sort) if sort else None
    except ValueError as exc:
        raise HTTPException(400, f"filter/sort must be JSON: {exc}") from exc
    if not isinstance(parsed_filter, dict):
        raise HTTPException(
            400, {"error": "invalid filter", "message": "filter must be a JSON object", "path": ""}
        )
    try:
        query = ItemQuery(
            filter=parsed_filter, sort=parsed_sort, page=page, page_size=page_size, cursor=cursor
        )
    except ValidationError as exc:
        # Built here, not by FastAPI, so its refusal is this route's to answer.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise HTTPException(
            400,
            {
                "error": "invalid sort",
                "message": f"sort must be an object or a list of objects ({problems})",
                "path": "sort",
            },
        ) from exc
    return await _query(request, dataset_id, project, repository, query)
