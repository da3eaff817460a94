"""Cancelled executions (``execution.cancelled.v1``) and the start of a batch: what a
worker skips, and the ``prediction.started.v1`` of what it does not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from common import cancels
from common.contracts import ExecutionCancelled
from common.envelope import CloudEvent
from common.outbox import enqueue_many
from model_serving_service.repository.base import RepositoryBase


class CancelRows(RepositoryBase):
    """The ``cancelled_executions`` table."""

    async def record_cancel(self, data: ExecutionCancelled, retention_seconds: float) -> bool:
        """Remember a cancelled execution (idempotent; the highest attempt wins) and forget
        cancels older than ``retention_seconds``. Whether this changed anything."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await cancels.record_cancel(conn, data, retention_seconds, with_service=True)

    async def cancelled(self, requests: Sequence[tuple[str, int]]) -> set[str]:
        """Which of these (execution id, attempt) requests were cancelled (at that attempt
        or a later one)."""
        return await cancels.cancelled_of(self.pool, list(requests))

    async def begin(
        self,
        requests: Sequence[tuple[str, int]],
        started: Callable[[set[str]], Sequence[CloudEvent[Any]]],
    ) -> set[str]:
        """The start of a batch of (execution id, attempt) requests: which were cancelled
        (returned), and the ``prediction.started.v1`` events ``started(cancelled)`` builds
        for the others, written to the outbox. Two statements, no transaction around them:
        the read needs none, and the write is one statement (a cancel that commits in
        between is seen by the next check, as it would be after a transaction)."""
        cancelled = await cancels.cancelled_of(self.pool, list(requests))
        events = started(cancelled)
        if events:
            async with self.pool.acquire() as conn:
                await enqueue_many(conn, events, self.events_exchange)
        return cancelled
