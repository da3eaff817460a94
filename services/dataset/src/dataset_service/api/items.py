"""One item: read, stream its bytes, its thumbnail, change, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from common.contracts import ItemSnapshot
from common.s3 import blob_key
from dataset_service.api.dependencies import Project_, Repo, Store, Thumbs, settings_of
from dataset_service.api.schemas import ItemPatch
from dataset_service.domain.thumbnails import (
    THUMBNAIL_MIMETYPE,
    THUMBNAIL_SIZES,
    check_image,
    check_size,
    etag_matches,
    thumbnail_etag,
)
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


@router.get(
    "/items/{item_id}/thumbnail",
    tags=["items"],
    response_class=Response,
    responses={
        200: {"content": {THUMBNAIL_MIMETYPE: {}}, "description": "The thumbnail (WebP)."},
        304: {"description": "Not modified: the If-None-Match ETag is the current one."},
        404: {"description": "No such item in the caller's project."},
        422: {
            "description": (
                "A size not offered, an item that is not an image, an image that cannot be "
                "decoded, or one over the pixel limit (DATASET_THUMBNAIL_MAX_PIXELS)."
            )
        },
    },
)
async def item_thumbnail(
    request: Request,
    item_id: str,
    project: Project_,
    repository: Repo,
    thumbnails: Thumbs,
    size: Annotated[
        int,
        Query(
            description=(
                "Longest side in pixels, one of "
                f"{', '.join(str(s) for s in THUMBNAIL_SIZES)} (never enlarged)."
            )
        ),
    ] = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The item's image scaled to fit ``size`` x ``size``, as WebP: made once per blob and
    size, then read from S3. A strong ETag (content and size), so ``If-None-Match`` gets a
    304 without a byte read; the browser may keep it (``Cache-Control: private``)."""
    check_size(size)
    item = await repository.get_item(project, item_id)
    system = item.system
    sha256 = check_image(item.id, system.mimetype, system.sha256)
    etag = thumbnail_etag(sha256, size)
    max_age = settings_of(request).thumbnail_max_age_seconds
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={max_age}"}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    data = await thumbnails.get(item.id, sha256, system.blob_key or blob_key(sha256), size)
    return Response(data, media_type=THUMBNAIL_MIMETYPE, headers=headers)


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
