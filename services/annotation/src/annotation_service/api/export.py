"""Routes of exports: a task's or a dataset's annotations as COCO JSON or JSON lines."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from annotation_service import domain
from annotation_service.api.dependencies import (
    CallerKey,
    DatasetClient,
    Project,
    Repo,
    ServiceSettings,
)
from annotation_service.usecases.export import DEFAULT_TASK_STATUSES, ExportFormat, export_rows

router = APIRouter(tags=["export"])

EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "COCO JSON (`format=coco`) or one JSON object per line (`format=jsonl`).",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.get("/tasks/{task_id}/export", responses=EXPORT_RESPONSES)
async def export_task(
    task_id: str,
    project: Project,
    repository: Repo,
    settings: ServiceSettings,
    format: ExportFormat = "coco",
    status: Annotated[list[domain.TaskItemStatus] | None, Query()] = None,
) -> Response:
    """A task's items and their current annotations as COCO JSON or JSON lines.

    ``status`` (repeatable) selects items; by default everything but discarded items.
    """
    task = await repository.get_task(project, task_id)
    export = await export_rows(
        repository,
        project,
        task["dataset_id"],
        limit=settings.export_max_items,
        task_id=task_id,
        statuses=list(status) if status else DEFAULT_TASK_STATUSES,
    )
    if format == "jsonl":
        return StreamingResponse(export.json_lines(), media_type="application/x-ndjson")
    return JSONResponse(export.coco(f"prelabel task {task['name']}"))


@router.get("/datasets/{dataset_id}/export", responses=EXPORT_RESPONSES)
async def export_dataset(
    dataset_id: str,
    project: Project,
    repository: Repo,
    settings: ServiceSettings,
    key: CallerKey,
    datasets: DatasetClient,
    format: ExportFormat = "coco",
) -> Response:
    """A dataset's current annotations as COCO JSON or JSON lines (another project's
    dataset: 404)."""
    await datasets.check(key, dataset_id)
    export = await export_rows(repository, project, dataset_id, limit=settings.export_max_items)
    if format == "jsonl":
        return StreamingResponse(export.json_lines(), media_type="application/x-ndjson")
    return JSONResponse(export.coco(f"prelabel dataset {dataset_id}"))
