"""Charges running replicas every few seconds, so budgets run out while replicas run
rather than when they stop. Several billing replicas may run it: each project is
charged under its budget row's lock, so a transition is announced once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from billing_service.metrics import transitions_total
from billing_service.repository import Repository
from common.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class Charger:
    """The periodic charging task (a background hook of the service runtime)."""

    def __init__(self, repo: Repository, interval_seconds: float) -> None:
        self._repo = repo
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    async def start(self) -> None:
        """Start charging in the background."""
        self._task = asyncio.create_task(self._run(), name="billing-charger")

    async def stop(self) -> None:
        """Stop charging."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def charge_running(self) -> None:
        """One round: charge every project with a running replica up to now."""
        for project_id in await self._repo.running_projects():
            transition = await self._repo.charge(project_id, datetime.now(UTC))
            if transition is not None:
                transitions_total().labels(transition).inc()
                log.info("budget %s", transition, extra={"project_id": project_id})
        self.rounds += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.charge_running()
            except asyncio.CancelledError:
                raise
            except Exception:
                raise_if_cancelling()
                log.exception("charging failed; retrying next round")
            await asyncio.sleep(self._interval)
