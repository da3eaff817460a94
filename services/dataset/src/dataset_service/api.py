"""HTTP API of the dataset service: thin routes over the repository and the item store.

Every route but the admin ones needs a project API key (``Authorization: Bearer``);
every lookup is scoped to that key's project, so another project's ids answer 404.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
)
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile

from common.auth import bearer_token
from common.contracts import ItemSnapshot
from common.dql import DQLError, parse_filter, parse_sort
from common.service import runtime_of
from dataset_service.deps import Deps, deps
from dataset_service.domain import (
    DatasetError,
    TooLargeError,
    normalize_dir,
    parse_user_metadata,
    sanitize_name,
)
from dataset_service.repository import ApiKey, Dataset, Project, Repository
from dataset_service.settings import Settings
from dataset_service.usecases import ItemStore

router = APIRouter()


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


async def store(d: Annotated[Deps, Depends(deps)]) -> ItemStore:
    """The service's item store."""
    return d.store


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


async def project_id(
    repository: Annotated[Repository, Depends(repo)],
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """The project of the caller's API key."""
    project = await repository.project_for_key(bearer_token(authorization))
    if project is None:
        raise HTTPException(401, "invalid API key")
    return project


async def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Only the admin key (from settings) passes."""
    expected = settings_of(request).admin_key
    if expected is None:
        raise HTTPException(403, "admin routes are disabled: DATASET_ADMIN_KEY is not set")
    if not secrets.compare_digest(bearer_token(authorization), expected.get_secret_value()):
        raise HTTPException(401, "invalid admin key")


Project_ = Annotated[str, Depends(project_id)]
Repo = Annotated[Repository, Depends(repo)]
Store = Annotated[ItemStore, Depends(store)]


class ProjectIn(BaseModel):
    """A new project."""

    name: str = Field(min_length=1, max_length=200)


class KeyIn(BaseModel):
    """A new API key."""

    name: str = Field(default="default", min_length=1, max_length=200)


class DatasetIn(BaseModel):
    """A new dataset."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class ItemPatch(BaseModel):
    """A change to an item; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    dir: str | None = None
    hidden: bool | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="Only ``metadata.user`` may change: {'user': {...}}."
    )


class ItemQuery(BaseModel):
    """A DQL query over a dataset's items."""

    filter: dict[str, Any] = Field(default_factory=dict)
    sort: list[dict[str, Any]] | dict[str, Any] | None = None
    page: int = Field(default=0, ge=0)
    page_size: int = Field(default=100, ge=1)


class ItemPage(BaseModel):
    """One page of items."""

    items: list[ItemSnapshot]
    total_count: int
    page: int
    page_size: int
    has_next: bool


# ---------------------------------------------------------------------- admin


@router.post("/projects", status_code=201, dependencies=[Depends(admin)], tags=["admin"])
async def create_project(body: ProjectIn, repository: Repo) -> Project:
    """Create a project (admin key)."""
    return await repository.create_project(body.name)


@router.post(
    "/projects/{project}/api-keys", status_code=201, dependencies=[Depends(admin)], tags=["admin"]
)
async def create_api_key(project: str, body: KeyIn, repository: Repo) -> ApiKey:
    """Create an API key for a project (admin key); the key is shown only in this answer."""
    return await repository.create_api_key(project, body.name)


class WhoAmI(BaseModel):
    """The project a key belongs to."""

    project_id: str


@router.get("/whoami", tags=["auth"])
async def whoami(project: Project_) -> WhoAmI:
    """Which project the caller's key belongs to (other services check keys here)."""
    return WhoAmI(project_id=project)


# ---------------------------------------------------------------------- datasets


@router.post("/datasets", status_code=201, tags=["datasets"])
async def create_dataset(body: DatasetIn, project: Project_, repository: Repo) -> Dataset:
    """Create a dataset."""
    return await repository.create_dataset(project, body.name, body.description)


@router.get("/datasets", tags=["datasets"])
async def list_datasets(
    project: Project_, repository: Repo, name: str | None = None
) -> list[Dataset]:
    """The project's datasets (optionally the one with ``name``)."""
    return await repository.list_datasets(project, name)


@router.get("/datasets/{dataset_id}", tags=["datasets"])
async def get_dataset(dataset_id: str, project: Project_, repository: Repo) -> Dataset:
    """One dataset with its item count."""
    return await repository.get_dataset(project, dataset_id)


@router.delete("/datasets/{dataset_id}", status_code=204, tags=["datasets"])
async def delete_dataset(
    dataset_id: str, project: Project_, repository: Repo, items: Store
) -> None:
    """Delete a dataset and all its items (each emits ``item.deleted.v1``)."""
    for item in await repository.delete_dataset(project, dataset_id):
        await items.delete_blob_if_unused(item)


# ---------------------------------------------------------------------- items


UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The item's bytes.",
                        },
                        "dir": {
                            "type": "string",
                            "default": "/",
                            "description": "Remote directory, e.g. /batch1.",
                        },
                        "metadata": {
                            "type": "string",
                            "description": "User metadata, a JSON object.",
                        },
                        "name": {
                            "type": "string",
                            "description": "Name; defaults to the file's name.",
                        },
                    },
                }
            }
        },
    }
}
"""The upload's multipart body, for the OpenAPI document (the route reads it itself)."""


def _form_text(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DatasetError(f"form field {field!r} must be text, not a file")
    return value


@router.post(
    "/datasets/{dataset_id}/items",
    status_code=201,
    tags=["items"],
    openapi_extra=UPLOAD_FORM,
)
async def upload_item(
    request: Request,
    dataset_id: str,
    project: Project_,
    items: Store,
    request_id: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Retries reuse the item.")
    ] = None,
) -> ItemSnapshot:
    """Upload one file into a dataset (multipart: ``file``, and optionally ``dir``,
    ``metadata`` and ``name``)."""
    # The form is read here rather than declared as File/Form parameters: FastAPI's
    # per-field machinery costs about as much CPU as storing the file. No dataset check
    # up front either: the insert checks it in the same statement, and a refused
    # upload removes the blob it wrote (see ItemStore.add_item).
    limit = settings_of(request).max_upload_bytes
    async with request.form(max_files=2, max_fields=8) as form:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise DatasetError("the multipart field 'file' with the item's bytes is required")
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise TooLargeError(f"file is larger than the limit of {limit} bytes")
        directory = _form_text(form, "dir") or "/"
        user_metadata = parse_user_metadata(_form_text(form, "metadata"))
        name = _form_text(form, "name") or file.filename or ""
    item, _ = await items.add_item(
        project_id=project,
        dataset_id=dataset_id,
        data=data,
        name=name,
        directory=directory,
        user_metadata=user_metadata,
        origin_id=f"http:{project}:{request_id}" if request_id else f"http:{uuid.uuid4().hex}",
    )
    return item


def _page(
    query: ItemQuery, project: str, dataset_id: str, settings: Settings
) -> tuple[Any, Any, int, int]:
    if query.page_size > settings.max_page_size:
        raise DatasetError(
            f"page_size {query.page_size} is over the maximum {settings.max_page_size}"
        )
    try:
        node = parse_filter(query.filter, max_depth=settings.dql_max_depth, defaults=True)
        sort = parse_sort(query.sort or [{"field": "filename", "order": "asc"}], "/sort")
    except DQLError as exc:
        raise HTTPException(
            400, {"error": "invalid filter", "message": exc.message, "path": exc.path}
        ) from exc
    return node, sort, query.page, query.page_size


async def _query(
    request: Request, dataset_id: str, project: str, repository: Repository, query: ItemQuery
) -> ItemPage:
    await repository.dataset_exists(project, dataset_id)
    node, sort, page, size = _page(query, project, dataset_id, settings_of(request))
    found, total = await repository.query_items(project, dataset_id, node, sort, page, size)
    return ItemPage(
        items=found,
        total_count=total,
        page=page,
        page_size=size,
        has_next=(page + 1) * size < total,
    )


@router.post("/datasets/{dataset_id}/items/query", tags=["items"])
async def query_items(
    request: Request, dataset_id: str, body: ItemQuery, project: Project_, repository: Repo
) -> ItemPage:
    """List items matching a DQL filter, sorted and paged."""
    return await _query(request, dataset_id, project, repository, body)


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
) -> ItemPage:
    """List items (``filter`` and ``sort`` as JSON in the query string)."""
    try:
        parsed_filter = json.loads(filter) if filter else {}
        parsed_sort = json.loads(sort) if sort else None
    except ValueError as exc:
        raise HTTPException(400, f"filter/sort must be JSON: {exc}") from exc
    if not isinstance(parsed_filter, dict):
        raise HTTPException(
            400, {"error": "invalid filter", "message": "filter must be a JSON object", "path": ""}
        )
    query = ItemQuery(filter=parsed_filter, sort=parsed_sort, page=page, page_size=page_size)
    return await _query(request, dataset_id, project, repository, query)


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
    user_metadata = None
    if body.metadata is not None:
        extra = set(body.metadata) - {"user"}
        if extra:
            raise DatasetError(f"only metadata.user can be changed, not {sorted(extra)}")
        user = body.metadata.get("user")
        if not isinstance(user, dict):
            raise DatasetError("metadata.user must be a JSON object")
        user_metadata = user
    fields: dict[str, Any] = {}
    if body.name is not None:
        fields["name"] = sanitize_name(body.name)
    if body.dir is not None:
        fields["dir"] = normalize_dir(body.dir)
    if body.hidden is not None:
        fields["hidden"] = body.hidden
    return await repository.update_item(
        project, item_id, user_metadata=user_metadata, fields=fields
    )


@router.delete("/items/{item_id}", status_code=204, tags=["items"])
async def delete_item(item_id: str, project: Project_, repository: Repo, items: Store) -> None:
    """Delete an item (its blob goes too unless other items share the content)."""
    item = await repository.delete_item(project, item_id)
    await items.delete_blob_if_unused(item)
