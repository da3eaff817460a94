"""The janitor marks replicas lost only once it has itself reached the database for one
horizon (after an outage every heartbeat is old), and warns once per outage."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, cast

import pytest

from model_serving_service.settings import Settings
from model_serving_service.usecases import ModelServing

HORIZON = 0.3


class DatabaseThatComesBack:
    """The janitor's repository: away for the first ``failures`` passes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.last_failure = 0.0
        self.expired_at: list[float] = []
        self.expired = asyncio.Event()

    async def expire_lost_replicas(self, stale: float, heartbeat: float = 0.0) -> list[str]:
        self.expired_at.append(time.monotonic())
        self.expired.set()
        return []

    async def all_triton_names(self) -> list[str]:
        if self.failures:
            self.failures -= 1
            self.last_failure = time.monotonic()
            raise ConnectionRefusedError("database away")
        return []


class Holds:
    async def reconcile(self, names: set[str]) -> list[str]:
        return []


def _janitor_of(repo: DatabaseThatComesBack) -> ModelServing:
    settings = Settings(
        amqp_url="amqp://localhost/",
        database_url="postgresql://localhost/x",
        s3_endpoint_url="http://localhost:1",
        hold_stale_seconds=HORIZON,
        janitor_seconds=0.01,
        model_repository=Path("/nonexistent"),
    )
    none = cast(Any, None)
    return ModelServing(
        settings=settings,
        repo=cast(Any, repo),
        files=none,
        holds=cast(Any, Holds()),
        inference=none,
        queues=none,
    )


async def test_no_replica_is_lost_until_the_database_was_reachable_for_one_horizon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = DatabaseThatComesBack(failures=5)
    janitor = asyncio.create_task(_janitor_of(repo).janitor())
    try:
        async with asyncio.timeout(10):
            await repo.expired.wait()
    finally:
        janitor.cancel()
        await asyncio.gather(janitor, return_exceptions=True)

    assert repo.failures == 0
    assert repo.expired_at[0] - repo.last_failure >= HORIZON
    failed = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in failed] == [
        "janitor pass failed; trying again every pass until it works"
    ]
