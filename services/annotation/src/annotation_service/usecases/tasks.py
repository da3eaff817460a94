"""Labeling tasks: items added by hand, listing with annotations, progress, acceptance."""

from __future__ import annotations

from typing import Any

from annotation_service import domain
from annotation_service.domain import NotFoundError
from annotation_service.domain.events import added_event
from annotation_service.repository import Repository, task_item_view
from common.contracts import TaskItemAdded


async def add_items(
    repo: Repository, project_id: str, task_id: str, item_ids: list[str], added_by: str
) -> list[str]:
    """Add items to a task by hand; return the ones that were not in it yet.

    The model version an item is credited to is its latest model annotation's.
    """
    async with repo.pool.acquire() as conn, conn.transaction():
        task = await repo.get_task(project_id, task_id, conn)
        known = await repo.known_items(conn, project_id, task["dataset_id"], item_ids)
        missing = sorted(set(item_ids) - known)
        if missing:
            raise NotFoundError(
                f"items not in dataset {task['dataset_id']!r}: {', '.join(missing[:20])}"
            )
        added = await repo.add_by_hand(conn, project_id, task_id, item_ids, added_by)
        await repo.publish(
            conn,
            [
                added_event(TaskItemAdded(task_id=task_id, project_id=project_id, item_id=item))
                for item in added
            ],
        )
    return added


async def list_task_items(
    repo: Repository, project_id: str, task_id: str, status: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """Items of a task (one status or all) with their current annotations."""
    await repo.get_task(project_id, task_id)
    total, rows = await repo.page(task_id, status, limit, offset)
    annotations = await repo.current_annotations(project_id, [r["item_id"] for r in rows])
    by_item: dict[str, list[dict[str, Any]]] = {}
    for ann in annotations:
        by_item.setdefault(ann["item_id"], []).append(ann)
    items = []
    for r in rows:
        item = task_item_view(r)
        item["annotations"] = by_item.get(r["item_id"], [])
        items.append(item)
    return total, items


async def progress(repo: Repository, project_id: str, task_id: str) -> dict[str, Any]:
    """Counts per status."""
    await repo.get_task(project_id, task_id)
    return domain.progress(await repo.status_counts(task_id))


async def acceptance(
    repo: Repository, project_id: str, task_id: str | None = None, dataset_id: str | None = None
) -> list[domain.Acceptance]:
    """Acceptance per model version over a task's (or the project's) reviewed items."""
    if task_id is not None:
        await repo.get_task(project_id, task_id)
    return domain.acceptance_by_model(await repo.review_counts(project_id, task_id, dataset_id))
