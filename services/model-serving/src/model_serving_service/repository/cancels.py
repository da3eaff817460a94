"""Cancelled executions (``execution.cancelled.v1``) and the start of a batch: what a
worker skips, and the ``prediction.started.v1`` of what it does not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from common.contracts import ExecutionCancelled
from common.envelope import CloudEvent
from common.messaging import enqueue_many
from model_serving_service.repository.base import RepositoryBase

CLEANUP_ROWS = 100
"""Expired cancels one recorded cancel deletes (more than one: the table cannot grow
while cancels keep coming, and it does not grow without them)."""

CANCELLED_OF = """SELECT c.execution_id FROM cancelled_executions c
    JOIN unnest($1::text[], $2::int[]) AS r(id, attempt) ON c.execution_id = r.id
    WHERE c.attempt >= r.attempt"""
"""The execution ids of (ids $1, attempts $2) requests cancelled at that attempt or later."""


class CancelRows(RepositoryBase):
    """The ``cancelled_executions`` table."""

    async def record_cancel(self, data: ExecutionCancelled, retention_seconds: float) -> bool:
        """Remember a cancelled execution (idempotent; the highest attempt wins) and forget
        cancels older than ``retention_seconds``. Whether this changed anything."""
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchval(
                """INSERT INTO cancelled_executions (execution_id, project_id, service_id,
                       attempt, cancelled_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (execution_id) DO UPDATE SET attempt = excluded.attempt,
                       cancelled_at = excluded.cancelled_at, recorded_at = now()
                   WHERE cancelled_executions.attempt < excluded.attempt
                   RETURNING 1""",
                data.execution_id,
                data.project_id,
                data.service_id,
                data.attempt,
                data.cancelled_at,
            )
            await conn.execute(
                """DELETE FROM cancelled_executions WHERE execution_id IN (
                       SELECT execution_id FROM cancelled_executions
                       WHERE recorded_at < now() - make_interval(secs => $1)
                       ORDER BY recorded_at LIMIT $2)""",
                retention_seconds,
                CLEANUP_ROWS,
            )
        return changed is not None

    async def cancelled(self, requests: Sequence[tuple[str, int]]) -> set[str]:
        """Which of these (execution id, attempt) requests were cancelled (at that attempt
        or a later one)."""
        if not requests:
            return set()
        rows = await self.pool.fetch(
            CANCELLED_OF,
            [r[0] for r in requests],
            [r[1] for r in requests],
        )
        return {r["execution_id"] for r in rows}

    async def begin(
        self,
        requests: Sequence[tuple[str, int]],
        started: Callable[[set[str]], Sequence[CloudEvent[Any]]],
    ) -> set[str]:
        """The start of a batch of (execution id, attempt) requests, in one transaction:
        which were cancelled (returned), and the ``prediction.started.v1`` events
        ``started(cancelled)`` builds for the others, written to the outbox."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                CANCELLED_OF,
                [r[0] for r in requests],
                [r[1] for r in requests],
            )
            cancelled = {r["execution_id"] for r in rows}
            events = started(cancelled)
            if events:
                await enqueue_many(conn, events, self.events_exchange)
        return cancelled
