"""Route of review: approve, correct or discard a pending task item."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from annotation_service.api.dependencies import Project, Repo
from annotation_service.api.schemas import ReviewIn
from annotation_service.usecases import review

router = APIRouter(tags=["tasks"])


@router.post("/tasks/{task_id}/items/{item_id}/review")
async def review_item(
    task_id: str, item_id: str, body: ReviewIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Approve, correct (corrections are annotation edits) or discard a pending item."""
    return await review.review(
        repository,
        project,
        task_id,
        item_id,
        body.action,
        body.reviewer,
        [c.as_change() for c in body.corrections],
    )
