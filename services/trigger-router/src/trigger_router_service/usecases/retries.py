"""Retries of retryable prediction failures: executions whose backoff is over get their
predict request sent again. Every router replica runs this (rows are claimed with
``SKIP LOCKED``, so two replicas never send one twice)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from common.tasks import raise_if_cancelling
from trigger_router_service import metrics
from trigger_router_service.repository import Repository

log = logging.getLogger(__name__)


class RetrySweeper:
    """Every ``poll_seconds``: send the predict requests of retries that are due."""

    def __init__(self, repo: Repository, poll_seconds: float) -> None:
        self._repo = repo
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sweeping in the background."""
        self._task = asyncio.create_task(self._run(), name="retry-sweeper")

    async def stop(self) -> None:
        """Stop sweeping (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                sent = await self._repo.release_due_retries()
            except Exception:
                raise_if_cancelling()
                # The database is away: the rows wait, the next pass sends them.
                log.warning("sending due retries failed; trying again", exc_info=True)
                sent = 0
            if sent:
                metrics.PREDICT_REQUESTS.labels("retried").inc(sent)
                metrics.EXECUTIONS.labels("queued").inc(sent)
            await asyncio.sleep(self._poll_seconds)
