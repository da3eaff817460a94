"""One item: read, stream its bytes, change, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from common.contracts import ItemSnapshot
from dataset_service.api.dependencies import Project_, Repo, Store
from dataset_service.api.schemas import ItemPatch
from dataset_service.usecases import changes

router = APIRouter()


@router.get("/items/{item_id}", tags=["items"])
async def get_item(item_id: str, project: Project_, repository: Repo) -> ItemSnapshot:
    """One item."""
    return await repository.get_item(project, item_id)


@router.get("/items/{item_id}/stream", tags=["items"])
async def stream_item(
    item_id: str, project: Project_, repository: Repo, items: Store
) -> StreamingResponse:
    """The item's bytes."""
    item = await repository.get_item(project, item_id)
    response = await items.read_blob(item)
    body = response["Body"]

    async def chunks() -> Any:
        async with body as stream:
            async for chunk in stream.iter_chunks(64 * 1024):
                yield chunk[0] if isinstance(chunk, tuple) else chunk

    return StreamingResponse(
        chunks(),
        media_type=item.metadata["system"]["mimetype"],
        headers={"Content-Length": str(item.metadata["system"]["size"])},
    )


@router.patch("/items/{item_id}", tags=["items"])
async def update_item(
    item_id: str, body: ItemPatch, project: Project_, repository: Repo
) -> ItemSnapshot:
    """Change name, dir, hidden or user metadata (``{"metadata": {"user": {...}}}``)."""
    return await changes.update_item(
        repository,
        project,
        item_id,
        name=body.name,
        directory=body.dir,
        hidden=body.hidden,
        metadata=body.metadata,
    )


@router.delete("/items/{item_id}", status_code=204, tags=["items"])
async def delete_item(item_id: str, project: Project_, repository: Repo, items: Store) -> None:
    """Delete an item (its blob goes too unless other items share the content)."""
    item = await repository.delete_item(project, item_id)
    await items.delete_blob_if_unused(item)
