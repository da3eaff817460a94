"""Decisions on task items, the latest per task item, for acceptance per model version."""

from __future__ import annotations

from datetime import datetime

from billing_service.domain.meters import as_utc
from billing_service.repository.base import RepositoryBase
from common.contracts import TaskItemReviewed
from common.outbox import claim_message
from common.topology import BILLING

REVIEWS_CONSUMER = f"{BILLING}.on_task_item_reviewed"


class ReviewRows(RepositoryBase):
    """The ``reviews`` table."""

    async def record_review(
        self, event_id: str, reviewed_at: datetime, review: TaskItemReviewed
    ) -> bool | None:
        """Store a decision on a task item; ``None`` when this event was handled before,
        False when a later decision on the same task item is already stored."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await claim_message(conn, REVIEWS_CONSUMER, event_id):
                return None
            model = review.model
            applied = await conn.fetchval(
                """INSERT INTO reviews (project_id, task_id, item_id, event_id, reviewed_at,
                       status, execution_id, service_id, model_name, model_id, model_version,
                       accepted_unchanged, auto_accepted)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                   ON CONFLICT (project_id, task_id, item_id) DO UPDATE SET
                       event_id = excluded.event_id, reviewed_at = excluded.reviewed_at,
                       status = excluded.status, execution_id = excluded.execution_id,
                       service_id = excluded.service_id, model_name = excluded.model_name,
                       model_id = excluded.model_id, model_version = excluded.model_version,
                       accepted_unchanged = excluded.accepted_unchanged,
                       auto_accepted = excluded.auto_accepted
                   WHERE (reviews.reviewed_at, reviews.event_id)
                         < (excluded.reviewed_at, excluded.event_id)
                   RETURNING 1""",
                review.project_id,
                review.task_id,
                review.item_id,
                event_id,
                as_utc(reviewed_at),
                review.status,
                review.execution_id,
                review.service_id,
                model.name if model else None,
                model.model_id if model else None,
                model.version if model else None,
                review.accepted_unchanged,
                review.auto_accepted,
            )
            return applied is not None
