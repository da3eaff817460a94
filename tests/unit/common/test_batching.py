"""The coalescer: concurrent submissions share flushes; each gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from common.batching import Coalescer


class Flush:
    """Records batches; items named ``bad*`` fail alone; ``explode`` fails the batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            await self.release.wait()  # hold the first flush so others queue behind it
        if "explode" in items:
            raise ConnectionError("database went away")
        return [ValueError(i) if i.startswith("bad") else i.upper() for i in items]


async def test_calls_arriving_during_a_flush_share_the_next_one() -> None:
    flush = Flush()
    coalescer: Coalescer[str, str] = Coalescer(flush, max_batch=3)

    first = asyncio.create_task(coalescer.submit("a"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit(x)) for x in "bcdef"]
    await asyncio.sleep(0)
    flush.release.set()

    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D", "E", "F"]
    assert flush.batches == [["a"], ["b", "c", "d"], ["e", "f"]]
    assert coalescer.batches == 3


async def test_each_item_gets_its_own_error_and_a_failed_flush_fails_its_batch() -> None:
    flush = Flush()
    flush.release.set()
    coalescer: Coalescer[str, str] = Coalescer(flush)

    results = await asyncio.gather(
        coalescer.submit("ok"), coalescer.submit("bad1"), return_exceptions=True
    )
    assert results[0] == "OK"
    assert isinstance(results[1], ValueError)

    with pytest.raises(ConnectionError):
        await coalescer.submit("explode")
    assert await coalescer.submit("later") == "LATER"
