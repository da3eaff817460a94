"""The micro-batcher: concurrent submissions share transactions; a bad one fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from annotation_service.ingest import IngestBatcher
from annotation_service.repository import IngestResult


class _Event:
    def __init__(self, n: int) -> None:
        self.n = n


async def test_concurrent_submissions_are_stored_in_shared_batches() -> None:
    batches: list[list[int]] = []

    async def store(events: Sequence[Any]) -> list[IngestResult]:
        batches.append([e.n for e in events])
        await asyncio.sleep(0)
        return [IngestResult(stored=e.n, added_to_tasks=0) for e in events]

    batcher = IngestBatcher(store, max_batch=4)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(_Event(n)) for n in range(10)))  # type: ignore[arg-type]
    finally:
        await batcher.stop()

    assert [r.stored for r in results] == list(range(10))
    assert sorted(n for batch in batches for n in batch) == list(range(10))
    assert max(len(batch) for batch in batches) == 4
    assert len(batches) < 10


async def test_a_failing_event_fails_alone_after_its_batch_is_retried_one_by_one() -> None:
    async def store(events: Sequence[Any]) -> list[IngestResult]:
        if any(e.n == 3 for e in events):
            raise RuntimeError("bad row")
        return [IngestResult(stored=1, added_to_tasks=0) for _ in events]

    batcher = IngestBatcher(store, max_batch=8, writers=2)
    batcher.start()
    try:
        outcomes = await asyncio.gather(
            *(batcher.submit(_Event(n)) for n in range(6)),  # type: ignore[arg-type]
            return_exceptions=True,
        )
    finally:
        await batcher.stop()

    failed = [n for n, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert failed == [3]


async def test_submitting_to_a_stopped_batcher_fails_so_the_message_is_redelivered() -> None:
    async def store(events: Sequence[Any]) -> list[IngestResult]:
        return []

    batcher = IngestBatcher(store, max_batch=1)
    with pytest.raises(ConnectionError):
        await batcher.submit(_Event(1))  # type: ignore[arg-type]
