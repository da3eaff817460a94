import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractQueue

from common.contracts import BudgetRestored, ItemCreated
from common.db import apply_migrations
from common.envelope import make_event
from common.outbox import (
    COMMON_MIGRATIONS,
    OutboxRelay,
    claim_message,
    claim_messages,
    claimed_messages,
    enqueue,
)
from common.testing.waits import wait_until


@pytest.fixture
async def outbox_pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await apply_migrations(pg_pool, pg_schema, COMMON_MIGRATIONS)
    return pg_pool


@pytest.fixture
async def bound_queue(
    amqp_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[str, AbstractQueue]]:
    exchange_name = unique_name("billing.events")
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(unique_name("probe"), exclusive=True)
    await queue.bind(exchange, routing_key="#")
    yield exchange_name, queue
    await exchange.delete()
    await connection.close()


def _restored(project: str) -> BudgetRestored:
    return BudgetRestored(project_id=project, budget=10, spent=1, at=datetime.now(UTC))  # type: ignore[arg-type]


async def _drain(queue: AbstractQueue, count: int, deadline: float = 10.0) -> list[bytes]:
    bodies: list[bytes] = []
    async with asyncio.timeout(deadline), queue.iterator() as it:
        async for message in it:
            await message.ack()
            bodies.append(message.body)
            if len(bodies) == count:
                break
    return bodies


async def test_committed_event_is_published_by_a_relay_started_later(
    outbox_pool: asyncpg.Pool, amqp_url: str, bound_queue: tuple[str, AbstractQueue]
) -> None:
    exchange, queue = bound_queue
    event = make_event(_restored("p1"), source="/test")
    async with outbox_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, event, exchange)
    # The "crash": nothing relayed yet. A relay started afterwards publishes it.
    relay = OutboxRelay(outbox_pool, amqp_url)
    await relay.start()

    async def outbox_empty() -> bool:
        return await outbox_pool.fetchval("SELECT count(*) FROM outbox") == 0

    try:
        bodies = await _drain(queue, 1)
        await wait_until(outbox_empty, message="confirmed row deleted from the outbox")
    finally:
        await relay.stop()
    assert bodies == [event.to_json_bytes()]


async def test_rolled_back_transaction_publishes_nothing(
    outbox_pool: asyncpg.Pool, amqp_url: str, bound_queue: tuple[str, AbstractQueue]
) -> None:
    exchange, queue = bound_queue
    relay = OutboxRelay(outbox_pool, amqp_url)
    await relay.start()
    try:
        async with outbox_pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await enqueue(conn, make_event(_restored("lost"), source="/test"), exchange)
            await tx.rollback()
        kept = make_event(_restored("kept"), source="/test")
        async with outbox_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, kept, exchange)
        bodies = await _drain(queue, 1)
    finally:
        await relay.stop()
    # Events are relayed in outbox order, so had the rolled-back one existed it would come first.
    assert bodies == [kept.to_json_bytes()]


async def test_relay_publishes_in_commit_order_with_the_event_routing_key(
    outbox_pool: asyncpg.Pool, amqp_url: str, bound_queue: tuple[str, AbstractQueue]
) -> None:
    exchange, queue = bound_queue
    events = [make_event(_restored(f"p{i}"), source="/test") for i in range(50)]
    async with outbox_pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, event, exchange)
    relay = OutboxRelay(outbox_pool, amqp_url, batch_size=7)
    await relay.start()
    received: list[tuple[str, str | None]] = []
    try:
        async with asyncio.timeout(10), queue.iterator() as it:
            async for message in it:
                await message.ack()
                received.append((message.routing_key or "", message.message_id))
                if len(received) == len(events):
                    break
    finally:
        await relay.stop()
    assert received == [("budget.restored.v1", e.id) for e in events]


class _CommitsDuringItsRound(OutboxRelay):
    """A relay that, during its first round with rows (after the SELECT, before the
    publish), has ``late`` committed by another connection and waits for its NOTIFY."""

    def __init__(self, pool: asyncpg.Pool, amqp_url: str, late: Callable[[], Any]) -> None:
        super().__init__(pool, amqp_url, poll_seconds=60)
        self._late = late
        self.late_notified = False

    async def _exchange(self, name: str, kind: str) -> Any:
        if not self.late_notified:
            self.late_notified = True
            await self._late()
            await wait_until(self._woken, timeout=5, message="the late commit's NOTIFY")
        return await super()._exchange(name, kind)

    async def _woken(self) -> bool:
        return self._wake.is_set()


async def test_a_commit_notified_during_a_round_gets_the_next_round_not_the_poll(
    outbox_pool: asyncpg.Pool, amqp_url: str, bound_queue: tuple[str, AbstractQueue]
) -> None:
    """The relay polls once a minute here: the late row arrives within seconds only if
    the NOTIFY that came during the round is kept for the next one."""
    exchange, queue = bound_queue
    first = make_event(_restored("first"), source="/test")
    late = make_event(_restored("late"), source="/test")

    async def commit_late() -> None:
        async with outbox_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, late, exchange)

    async with outbox_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, first, exchange)
    relay = _CommitsDuringItsRound(outbox_pool, amqp_url, commit_late)
    await relay.start()
    try:
        bodies = await _drain(queue, 2, deadline=10)
    finally:
        await relay.stop()
    assert relay.late_notified
    assert bodies == [first.to_json_bytes(), late.to_json_bytes()]


async def test_a_notify_for_rows_already_published_wakes_nobody(
    outbox_pool: asyncpg.Pool, amqp_url: str, bound_queue: tuple[str, AbstractQueue]
) -> None:
    """The NOTIFY carries the highest outbox id its statement inserted: a relay whose
    round already published that row does not go round again for it."""
    exchange, queue = bound_queue
    relay = OutboxRelay(outbox_pool, amqp_url, poll_seconds=60)
    await relay.start()
    try:
        async with outbox_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, make_event(_restored("once"), source="/test"), exchange)
            row_id = await conn.fetchval("SELECT max(id) FROM outbox")
        await _drain(queue, 1)

        async def published() -> bool:
            return relay.published == 1

        await wait_until(published, message="the row published and deleted")
        relay._wake.clear()
        relay._on_notify(None, 0, "", str(row_id))
        relay._on_notify(None, 0, "", "0")
        assert not relay._wake.is_set()
        relay._on_notify(None, 0, "", str(row_id + 1))
        assert relay._wake.is_set()
    finally:
        await relay.stop()


async def test_claim_message_is_true_once_per_consumer(outbox_pool: asyncpg.Pool) -> None:
    async with outbox_pool.acquire() as conn:
        first = await claim_message(conn, "billing.on_replica", "evt-1")
        again = await claim_message(conn, "billing.on_replica", "evt-1")
        other_consumer = await claim_message(conn, "annotation.on_x", "evt-1")
    assert (first, again, other_consumer) == (True, False, True)


async def test_claim_messages_returns_the_ids_not_claimed_before(outbox_pool: asyncpg.Pool) -> None:
    async with outbox_pool.acquire() as conn, conn.transaction():
        await claim_message(conn, "billing.on_batch", "evt-b")
        fresh = await claim_messages(conn, "billing.on_batch", ["evt-a", "evt-b", "evt-a", "evt-c"])
        again = await claim_messages(conn, "billing.on_batch", ["evt-a", "evt-c", "evt-d"])
        nothing = await claim_messages(conn, "billing.on_batch", [])
    assert (fresh, again, nothing) == ({"evt-a", "evt-c"}, {"evt-d"}, set())
    seen = await claimed_messages(outbox_pool, "billing.on_batch", ["evt-a", "evt-x", "evt-d"])
    other = await claimed_messages(outbox_pool, "annotation.on_batch", ["evt-a"])
    assert (seen, other) == ({"evt-a", "evt-d"}, set())


def test_make_event_derives_type_from_contract() -> None:
    assert make_event(_restored("p"), source="/t").type == "prelabel.budget.restored.v1"
    assert ItemCreated.routing_key == "item.created.v1"
