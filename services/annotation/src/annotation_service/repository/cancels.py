"""Cancelled executions (``execution.cancelled.v1``): remembered so that their predictions
store nothing, and what they already stored taken back.

A cancel and the storing of the same execution's prediction serialise on a transaction
advisory lock per execution id (exclusive for the cancel, shared for a batch of
predictions), so whichever commits second sees the other: a prediction stored while a
cancel was on its way is removed by the cancel, a prediction arriving after it is not
stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from annotation_service.repository.base import Store
from common import cancels
from common.contracts import ExecutionCancelled

EXECUTION_LOCKS = 0x616E6E6F
"""Advisory lock class (``pg_advisory_xact_lock(class, hashtext(execution id))``) of
execution ids; the two-key space does not overlap other services' one-key locks."""


@dataclass(frozen=True)
class Discarded:
    """What a cancel took back of its execution's prediction."""

    annotations: int
    """Model annotations deleted."""
    task_items: int
    """Task items (added by the prediction, not reviewed) taken out of their tasks."""
    kept: bool
    """Whether a person had already reviewed them, so nothing was taken back."""


class Cancels(Store):
    """The ``cancelled_executions`` table and what a cancel removes."""

    async def lock_executions(
        self, conn: asyncpg.Connection, execution_ids: Sequence[str], *, exclusive: bool
    ) -> None:
        """Take the executions' advisory locks until the transaction ends (in id order)."""
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await conn.execute(
            f"""SELECT count({function}($1, h))
                FROM (SELECT DISTINCT hashtext(e) AS h FROM unnest($2::text[]) AS e
                      ORDER BY 1) AS ids""",
            EXECUTION_LOCKS,
            list(execution_ids),
        )

    async def cancelled_of(
        self, conn: asyncpg.Connection, predictions: Sequence[tuple[str, int | None]]
    ) -> set[str]:
        """Which (execution id, attempt) predictions were cancelled, at that attempt or a
        later one (a prediction without an attempt: whenever its execution was)."""
        return await cancels.cancelled_of(conn, predictions)

    async def record_cancel(
        self, conn: asyncpg.Connection, data: ExecutionCancelled, retention_seconds: float
    ) -> bool:
        """Remember a cancel (the highest attempt wins) and forget those older than
        ``retention_seconds``; whether this one was new."""
        return await cancels.record_cancel(conn, data, retention_seconds)

    async def discard_prediction(
        self, conn: asyncpg.Connection, project_id: str, execution_id: str, attempt: int
    ) -> Discarded:
        """Take back what the execution's prediction (up to ``attempt``) stored: its model
        annotations and the task items it added that nobody reviewed yet. Nothing when a
        person already reviewed them (edited or deleted one of those annotations, or
        reviewed a task item of the execution)."""
        reviewed = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM annotations
                   WHERE execution_id = $1 AND project_id = $2 AND source = 'model'
                     AND coalesce(attempt, 0) <= $3
                     AND (modified_at IS NOT NULL OR deleted_at IS NOT NULL))
               OR EXISTS (SELECT 1 FROM task_items
                   WHERE execution_id = $1 AND project_id = $2 AND reviewed_at IS NOT NULL)""",
            execution_id,
            project_id,
            attempt,
        )
        if reviewed:
            return Discarded(0, 0, kept=True)
        deleted = await conn.fetch(
            """DELETE FROM annotations
               WHERE execution_id = $1 AND project_id = $2 AND source = 'model'
                 AND coalesce(attempt, 0) <= $3
               RETURNING id""",
            execution_id,
            project_id,
            attempt,
        )
        # A later attempt's prediction (a rerun) may have added the item since: keep it.
        removed = await conn.fetch(
            """DELETE FROM task_items t
               WHERE t.execution_id = $1 AND t.project_id = $2 AND t.added_by = 'prediction'
                 AND t.status = 'pending-review' AND t.reviewed_at IS NULL
                 AND NOT EXISTS (SELECT 1 FROM annotations a
                     WHERE a.execution_id = $1 AND a.attempt > $3)
               RETURNING t.task_id""",
            execution_id,
            project_id,
            attempt,
        )
        return Discarded(len(deleted), len(removed), kept=False)
