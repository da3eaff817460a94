"""Review of task items: a decision, corrections applied as annotation edits in the same
transaction, and ``task_item.reviewed.v1``."""

from __future__ import annotations

from typing import Any

import asyncpg

from annotation_service import domain
from annotation_service.domain import AnnotationError, ConflictError
from annotation_service.domain.events import model_ref, reviewed_event
from annotation_service.repository import Repository, task_item_view
from annotation_service.usecases.annotations import (
    create_human_annotation,
    delete_annotation,
    edit_annotation,
)
from common.contracts import TaskItemReviewed


async def review(
    repo: Repository,
    project_id: str,
    task_id: str,
    item_id: str,
    action: domain.ReviewAction,
    reviewer: str,
    corrections: list[dict[str, Any]],
) -> dict[str, Any]:
    """Decide on a pending task item, applying corrections as annotation edits in the
    same transaction, and announce the outcome."""
    async with repo.pool.acquire() as conn, conn.transaction():
        await repo.get_task(project_id, task_id, conn)
        current = await repo.lock_task_item(conn, task_id, item_id)
        if current["status"] != domain.PENDING:
            raise ConflictError(f"item {item_id!r} was already reviewed ({current['status']})")
        if action != "correct" and corrections:
            raise AnnotationError(f"action {action!r} takes no corrections; use 'correct'")
        for correction in corrections:
            await _apply_correction(repo, conn, project_id, item_id, correction, reviewer)
        changed = await repo.changed_since(conn, project_id, item_id, current["added_at"])
        status = domain.review_outcome(action, len(corrections), changed and not corrections)
        row = await repo.record_review(conn, project_id, task_id, item_id, status, reviewer)
        execution = row["execution_id"]
        unchanged = (
            status == domain.APPROVED
            and execution is not None
            and not await repo.model_annotations_changed(conn, project_id, item_id, execution)
        )
        event = reviewed_event(
            TaskItemReviewed(
                task_id=task_id,
                project_id=project_id,
                item_id=item_id,
                status=status,
                reviewer=reviewer,
                execution_id=execution,
                service_id=row["service_id"],
                model=model_ref(row["model_name"], row["model_id"], row["model_version"]),
                accepted_unchanged=unchanged,
            ),
            execution,
        )
        await repo.publish(conn, [event])
    return task_item_view(row)


async def _apply_correction(
    repo: Repository,
    conn: asyncpg.Connection,
    project_id: str,
    item_id: str,
    correction: dict[str, Any],
    reviewer: str,
) -> None:
    op = correction["op"]
    if op == "create":
        await create_human_annotation(
            repo,
            project_id,
            item_id,
            correction["type"],
            correction["label"],
            correction.get("coordinates"),
            correction.get("text"),
            reviewer,
            conn=conn,
        )
        return
    annotation_id = correction["annotation_id"]
    if await repo.annotation_item(conn, project_id, annotation_id) != item_id:
        raise AnnotationError(
            f"annotation {annotation_id!r} does not belong to item {item_id!r}", 422
        )
    if op == "delete":
        await delete_annotation(repo, project_id, annotation_id, reviewer, conn=conn)
    else:
        changes: dict[str, Any] = {
            k: correction[k] for k in ("type", "label", "coordinates", "text") if k in correction
        }
        await edit_annotation(repo, project_id, annotation_id, changes, reviewer, conn=conn)
