"""Writing in batches: coalescing concurrent calls (group commit), and falling back to
one item at a time when a batch fails.

Many requests in flight at once each want one row written; a round trip and a commit
per row cost more than the row itself. A :class:`Coalescer` passes the first call
straight through, and every call that arrives while that batch is being written waits
for the next one, which takes them all (up to ``max_batch``). Nobody waits for a timer:
an idle service writes each row at once, a busy one in batches as large as the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
"""Writes a batch; returns one result per item, or the exception that item failed with."""


async def together_or_alone(
    items: Sequence[T], write: Callable[[Sequence[T]], Awaitable[Sequence[R]]]
) -> list[R | Exception]:
    """``write`` all ``items`` at once (one result each); if that fails, write each alone,
    so that only an item at fault fails. One result or exception per item, in order."""
    if not items:
        return []
    try:
        return list(await write(items))
    except Exception as exc:
        if len(items) == 1:
            return [exc]
    results: list[R | Exception] = []
    for item in items:
        try:
            results.extend(await write([item]))
        except Exception as exc:
            results.append(exc)
    return results


class Coalescer(Generic[T, R]):
    """Submits items to ``flush`` in batches; see the module docstring."""

    def __init__(self, flush: Flush[T, R], *, max_batch: int = 64) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches flushed so far."""

    async def submit(self, item: T) -> R:
        """Write ``item`` with whatever else is waiting; its result, or raise its error."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self.batches += 1
            try:
                results = list(await self._flush([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for {len(batch)} items")
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
