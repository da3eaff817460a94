"""HTTP API of the annotation service: annotations, labeling tasks, review, export.

Every route needs a project API key (``Authorization: Bearer``), checked by the
dataset service; every lookup is scoped to that project, so other projects' ids
answer 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from annotation_service import domain
from annotation_service.deps import Deps, deps
from annotation_service.domain import AnnotationError
from annotation_service.repository import Repository
from annotation_service.settings import Settings
from common.auth import KeyIntrospector, project_dependency
from common.contracts.model_serving import AnnotationType
from common.service import runtime_of

router = APIRouter()


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).introspector


Project = Annotated[str, Depends(project_dependency(_introspector))]
Repo = Annotated[Repository, Depends(repo)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0)]


# --------------------------------------------------------------------------- bodies


class AnnotationIn(BaseModel):
    """An annotation made by a person."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1)
    type: AnnotationType
    label: str = Field(min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None
    author: str = Field(default="human", min_length=1, max_length=200)


class AnnotationPatch(BaseModel):
    """A change to an annotation; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    type: AnnotationType | None = None
    label: str | None = Field(default=None, min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None
    editor: str = Field(default="human", min_length=1, max_length=200)


class TaskIn(BaseModel):
    """A labeling task on a dataset.

    ``auto_add``: every item of the dataset enters the task when a prediction on it
    lands; ``auto_add_from_services``: only predictions of these model services.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    dataset_id: str = Field(min_length=1)
    pipeline_id: str | None = None
    auto_add: bool = False
    auto_add_from_services: list[str] = Field(default_factory=list, max_length=100)


class TaskItemsIn(BaseModel):
    """Items added to a task by hand."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] = Field(min_length=1, max_length=10_000)
    added_by: str = Field(default="human", min_length=1, max_length=200)


class Correction(BaseModel):
    """One annotation edit submitted with a review."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["create", "update", "delete"]
    annotation_id: str | None = None
    type: AnnotationType | None = None
    label: str | None = Field(default=None, min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None

    @model_validator(mode="after")
    def _fits_op(self) -> Correction:
        if self.op == "create" and (self.type is None or self.label is None):
            raise ValueError("a 'create' correction needs type and label")
        if self.op != "create" and not self.annotation_id:
            raise ValueError(f"an {self.op!r} correction needs annotation_id")
        return self

    def as_change(self) -> dict[str, Any]:
        """The correction as the repository applies it (only the fields given)."""
        return self.model_dump(exclude_unset=True)


class ReviewIn(BaseModel):
    """A reviewer's decision on a task item."""

    model_config = ConfigDict(extra="forbid")

    action: domain.ReviewAction
    reviewer: str = Field(min_length=1, max_length=200)
    corrections: list[Correction] = Field(default_factory=list, max_length=1000)


# --------------------------------------------------------------------------- annotations


@router.get("/annotations", tags=["annotations"])
async def list_annotations(
    project: Project,
    repository: Repo,
    item_id: str | None = None,
    dataset_id: str | None = None,
    include_deleted: bool = False,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Annotations of an item or a dataset (current versions, with the model's original)."""
    return await repository.list_annotations(
        project,
        item_id=item_id,
        dataset_id=dataset_id,
        include_deleted=include_deleted,
        limit=limit,
        offset=offset,
    )


@router.post("/annotations", status_code=201, tags=["annotations"])
async def create_annotation(
    body: AnnotationIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Annotate an item by hand (source ``human``)."""
    return await repository.create_human_annotation(
        project, body.item_id, body.type, body.label, body.coordinates, body.text, body.author
    )


@router.get("/annotations/{annotation_id}", tags=["annotations"])
async def get_annotation(annotation_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """One annotation."""
    return await repository.get_annotation(project, annotation_id)


@router.patch("/annotations/{annotation_id}", tags=["annotations"])
async def edit_annotation(
    annotation_id: str, body: AnnotationPatch, project: Project, repository: Repo
) -> dict[str, Any]:
    """Edit an annotation; a model annotation keeps its original for comparison."""
    changes = body.model_dump(exclude_unset=True, exclude={"editor"})
    if not changes:
        raise AnnotationError("nothing to change: give type, label, coordinates or text")
    return await repository.edit_annotation(project, annotation_id, changes, body.editor)


@router.delete("/annotations/{annotation_id}", status_code=204, tags=["annotations"])
async def delete_annotation(
    annotation_id: str,
    project: Project,
    repository: Repo,
    editor: Annotated[str, Query(min_length=1, max_length=200)] = "human",
) -> Response:
    """Delete an annotation (kept, flagged deleted, for comparison with the model)."""
    await repository.delete_annotation(project, annotation_id, editor)
    return Response(status_code=204)


# --------------------------------------------------------------------------- tasks


@router.post("/tasks", status_code=201, tags=["tasks"])
async def create_task(body: TaskIn, project: Project, repository: Repo) -> dict[str, Any]:
    """Create a labeling task."""
    return await repository.create_task(
        project,
        body.name,
        body.dataset_id,
        body.pipeline_id,
        body.auto_add,
        list(dict.fromkeys(body.auto_add_from_services)),
    )


@router.get("/tasks", tags=["tasks"])
async def list_tasks(project: Project, repository: Repo) -> list[dict[str, Any]]:
    """The project's tasks."""
    return await repository.list_tasks(project)


@router.get("/tasks/{task_id}", tags=["tasks"])
async def get_task(task_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """One task with its progress."""
    task = await repository.get_task(project, task_id)
    task["progress"] = await repository.progress(project, task_id)
    return task


@router.post("/tasks/{task_id}/items", status_code=201, tags=["tasks"])
async def add_task_items(
    task_id: str, body: TaskItemsIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Add items to a task by hand (items already in it are left as they are)."""
    added = await repository.add_items(project, task_id, body.item_ids, body.added_by)
    return {"added": added}


@router.get("/tasks/{task_id}/items", tags=["tasks"])
async def list_task_items(
    task_id: str,
    project: Project,
    repository: Repo,
    status: domain.TaskItemStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Items of a task, by status, each with its current annotations."""
    total, items = await repository.list_task_items(project, task_id, status, limit, offset)
    return {"total": total, "items": items, "limit": limit, "offset": offset}


@router.post("/tasks/{task_id}/items/{item_id}/review", tags=["tasks"])
async def review_item(
    task_id: str, item_id: str, body: ReviewIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Approve, correct (corrections are annotation edits) or discard a pending item."""
    return await repository.review(
        project,
        task_id,
        item_id,
        body.action,
        body.reviewer,
        [c.as_change() for c in body.corrections],
    )


@router.get("/tasks/{task_id}/progress", tags=["tasks"])
async def task_progress(task_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """Counts per status and the fraction reviewed."""
    return await repository.progress(project, task_id)


def _acceptance_view(rows: list[domain.Acceptance]) -> list[dict[str, Any]]:
    return [
        {
            "model": {
                "name": a.model.name,
                "model_id": a.model.model_id,
                "version": a.model.version,
            },
            "reviewed": a.reviewed,
            "approved": a.approved,
            "corrected": a.corrected,
            "discarded": a.discarded,
            "acceptance_rate": a.rate,
        }
        for a in rows
    ]


@router.get("/tasks/{task_id}/acceptance", tags=["tasks"])
async def task_acceptance(task_id: str, project: Project, repository: Repo) -> list[dict[str, Any]]:
    """Per model version: approved without change / reviewed."""
    return _acceptance_view(await repository.acceptance(project, task_id=task_id))


@router.get("/acceptance", tags=["tasks"])
async def project_acceptance(
    project: Project, repository: Repo, dataset_id: str | None = None
) -> list[dict[str, Any]]:
    """Acceptance per model version over every task of the project (or of one dataset)."""
    return _acceptance_view(await repository.acceptance(project, dataset_id=dataset_id))


# --------------------------------------------------------------------------- export

ExportFormat = Literal["coco", "jsonl"]


async def _export(
    request: Request,
    repository: Repository,
    project: str,
    dataset_id: str,
    fmt: ExportFormat,
    description: str,
    task_id: str | None = None,
    statuses: list[str] | None = None,
) -> Response:
    images, annotations = await repository.export_rows(
        project, dataset_id, task_id=task_id, statuses=statuses or ()
    )
    limit = settings_of(request).export_max_items
    if len(images) > limit:
        raise AnnotationError(f"export of {len(images)} items exceeds the limit of {limit}", 413)
    if fmt == "jsonl":

        def lines() -> Iterator[bytes]:
            for ann in annotations:
                yield json.dumps(ann, default=_json_default).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")
    export = domain.to_coco(
        images,
        (
            domain.ExportAnnotation(
                a["id"],
                a["item_id"],
                a["type"],
                a["label"],
                a["coordinates"],
                a["confidence"],
                a["source"],
            )
            for a in annotations
        ),
        description=description,
        created=datetime.now(UTC),
    )
    document = export.document
    document["info"]["prelabel_skipped"] = export.skipped
    return JSONResponse(document)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@router.get("/tasks/{task_id}/export", tags=["export"])
async def export_task(
    request: Request,
    task_id: str,
    project: Project,
    repository: Repo,
    format: ExportFormat = "coco",
    status: Annotated[list[domain.TaskItemStatus] | None, Query()] = None,
) -> Response:
    """A task's items and their current annotations as COCO JSON or JSON lines.

    ``status`` (repeatable) selects items; by default everything but discarded items.
    """
    task = await repository.get_task(project, task_id)
    statuses: list[str] = list(status) if status else ["pending-review", "approved", "corrected"]
    return await _export(
        request,
        repository,
        project,
        task["dataset_id"],
        format,
        f"prelabel task {task['name']}",
        task_id=task_id,
        statuses=statuses,
    )


@router.get("/datasets/{dataset_id}/export", tags=["export"])
async def export_dataset(
    request: Request,
    dataset_id: str,
    project: Project,
    repository: Repo,
    format: ExportFormat = "coco",
) -> Response:
    """A dataset's current annotations as COCO JSON or JSON lines."""
    return await _export(
        request, repository, project, dataset_id, format, f"prelabel dataset {dataset_id}"
    )
