"""Labeling tasks: items added by hand or by a pipeline's task node, listing with
annotations, progress, acceptance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from annotation_service import domain
from annotation_service.domain import NotFoundError
from annotation_service.domain.events import (
    TaskItemFacts,
    added_event,
    model_ref,
    task_node_events,
)
from annotation_service.repository import Repository, task_item_view
from common.consumer import DUPLICATE, HANDLED, Handled
from common.contracts import AddTaskItem, TaskItemAdded
from common.envelope import CloudEvent
from common.outbox import OutboxEvent


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
    counts, auto_accepted = await repo.review_counts(project_id, task_id, dataset_id)
    return domain.acceptance_by_model(counts, auto_accepted)


async def add_task_item(repo: Repository, event: CloudEvent[AddTaskItem]) -> Handled:
    """Carry out a pipeline's ``add_task_item.v1``: store the prediction's annotations
    (unless its ``prediction.completed.v1`` already did), put the item into the task
    (approved when ``auto_accept``) and announce it, in one transaction.

    Idempotent on (pipeline execution, node) and on (task, item): a redelivery stores
    nothing twice but publishes its events again under the same ids, so the router,
    which waits on ``task_item.added.v1``, hears of it even if the first was lost.
    Raises :class:`AnnotationError` (dead-lettered with its message) for a task that is
    not the project's, a dataset that is not the task's, or unusable annotations.
    """
    command = event.data
    rows = domain.annotations_from_command(command)
    reviewer = domain.pipeline_reviewer(command.pipeline_id)
    async with repo.pool.acquire() as conn, conn.transaction():
        task = await repo.find_task(conn, command.task_id)
        domain.check_command(
            command,
            task["project_id"] if task else None,
            task["dataset_id"] if task else None,
            await repo.item_place(conn, command.item_id),
        )
        events: list[OutboxEvent] = []
        if rows and await repo.insert_model_annotations(conn, [rows]):
            events.append(domain.created_event(rows, command.execution_id, datetime.now(UTC)))
        row = await repo.pipeline_item(conn, command.pipeline_execution_id, command.node_id)
        inserted = False
        if row is None:
            row, inserted = await repo.add_from_pipeline(conn, command, reviewer)
        ours = (row["pipeline_execution_id"], row["node_id"]) == (
            command.pipeline_execution_id,
            command.node_id,
        )
        events.extend(
            task_node_events(
                command,
                TaskItemFacts(
                    status=row["status"],
                    auto_accepted=ours and bool(row["auto_accepted"]),
                    reviewer=row["reviewer"] or reviewer,
                    execution_id=row["execution_id"],
                    service_id=row["service_id"],
                    model=model_ref(row["model_name"], row["model_id"], row["model_version"]),
                ),
            )
        )
        await repo.publish(conn, events)
    return HANDLED if inserted else DUPLICATE
