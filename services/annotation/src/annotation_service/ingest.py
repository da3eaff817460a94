"""Micro-batching of prediction ingestion.

The broker hands the handler up to ``prefetch`` messages at once, each in its own
task. Instead of one transaction per message, each handler submits its prediction
here and waits: a single writer stores everything submitted so far in one
transaction (one multi-row insert for the annotations, one for the outbox), then
wakes the handlers, which ack. A message is acked only after its rows committed,
so at-least-once delivery holds; if a batch fails, its predictions are retried one
by one so a single bad message fails (and is redelivered or dead-lettered) alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from annotation_service.repository import IngestResult
from common.contracts import PredictionCompleted
from common.envelope import CloudEvent

log = logging.getLogger(__name__)

Store = Callable[[Sequence[CloudEvent[PredictionCompleted]]], Awaitable[list[IngestResult]]]
Pending = tuple[CloudEvent[PredictionCompleted], "asyncio.Future[IngestResult]"]


class IngestBatcher:
    """Collects predictions from concurrent handlers and stores them in batches."""

    def __init__(self, store: Store, *, max_batch: int, writers: int = 1) -> None:
        self._store = store
        self._max_batch = max_batch
        self._writers = writers
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0

    def start(self) -> None:
        """Start the writer tasks.

        More than one writer lets one batch wait on PostgreSQL while the next is built.
        """
        self._tasks = [
            asyncio.create_task(self._run(), name=f"annotation-ingest-{n}")
            for n in range(self._writers)
        ]

    async def stop(self) -> None:
        """Stop the writers; handlers still waiting fail and their messages are redelivered."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(ConnectionError("ingest stopped"))
        self._pending.clear()

    async def submit(self, event: CloudEvent[PredictionCompleted]) -> IngestResult:
        """Store ``event``'s annotations; returns once they are committed."""
        if not self._tasks or all(task.done() for task in self._tasks):
            raise ConnectionError("ingest writer is not running")
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)

    async def _flush(self, batch: list[Pending]) -> None:
        self.batches += 1
        try:
            results = await self._store([event for event, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning("ingest batch failed; retrying one by one", extra={"size": len(batch)})
            for pending in batch:
                await self._flush([pending])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[IngestResult], outcome: IngestResult | Exception) -> None:
    if future.done():  # the handler was cancelled (broker stopping)
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
