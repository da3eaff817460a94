"""Routes of labeling tasks: create, list, get, items, progress, acceptance."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from annotation_service import domain
from annotation_service.api.dependencies import (
    CallerKey,
    DatasetClient,
    Limit,
    Offset,
    Project,
    Repo,
    ServiceClient,
)
from annotation_service.api.schemas import TaskIn, TaskItemsIn, acceptance_view
from annotation_service.usecases import tasks

router = APIRouter(tags=["tasks"])


@router.post("/tasks", status_code=201)
async def create_task(
    body: TaskIn,
    project: Project,
    repository: Repo,
    key: CallerKey,
    datasets: DatasetClient,
    services: ServiceClient,
) -> dict[str, Any]:
    """Create a labeling task on one of the project's datasets, fed from the project's model
    services (another project's dataset or service: 404)."""
    from_services = list(dict.fromkeys(body.auto_add_from_services))
    await datasets.check(key, body.dataset_id)
    if services is not None:
        await asyncio.gather(*(services.check(key, s) for s in from_services))
    return await repository.create_task(
        project, body.name, body.dataset_id, body.pipeline_id, body.auto_add, from_services
    )


@router.get("/tasks")
async def list_tasks(project: Project, repository: Repo) -> list[dict[str, Any]]:
    """The project's tasks."""
    return await repository.list_tasks(project)


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """One task with its progress."""
    task = await repository.get_task(project, task_id)
    task["progress"] = await tasks.progress(repository, project, task_id)
    return task


@router.post("/tasks/{task_id}/items", status_code=201)
async def add_task_items(
    task_id: str, body: TaskItemsIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Add items to a task by hand (items already in it are left as they are)."""
    added = await tasks.add_items(repository, project, task_id, body.item_ids, body.added_by)
    return {"added": added}


@router.get("/tasks/{task_id}/items")
async def list_task_items(
    task_id: str,
    project: Project,
    repository: Repo,
    status: domain.TaskItemStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Items of a task, by status, each with its current annotations."""
    total, items = await tasks.list_task_items(repository, project, task_id, status, limit, offset)
    return {"total": total, "items": items, "limit": limit, "offset": offset}


@router.get("/tasks/{task_id}/progress")
async def task_progress(task_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """Counts per status and the fraction reviewed."""
    return await tasks.progress(repository, project, task_id)


@router.get("/tasks/{task_id}/acceptance")
async def task_acceptance(task_id: str, project: Project, repository: Repo) -> list[dict[str, Any]]:
    """Per model version: approved without change / reviewed."""
    return acceptance_view(await tasks.acceptance(repository, project, task_id=task_id))


@router.get("/acceptance")
async def project_acceptance(
    project: Project, repository: Repo, dataset_id: str | None = None
) -> list[dict[str, Any]]:
    """Acceptance per model version over every task of the project (or of one dataset)."""
    return acceptance_view(await tasks.acceptance(repository, project, dataset_id=dataset_id))
