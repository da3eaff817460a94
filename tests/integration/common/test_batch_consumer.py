"""BatchConsumer on the real broker: batches, one ack per batch, dead letters with a
reason, retries redelivered, a crashing handler loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import aio_pika
from faststream.rabbit import RabbitBroker

from common.consumer import HANDLED, BatchConsumer, BatchHandler, DeadLetter, Outcome, Retry
from common.messaging import consumer_queue, declare_dead_letter, events_exchange
from common.observability import ServiceMetrics
from common.testing.broker import delete_names, publish_raw
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER, Topology

METRICS = ServiceMetrics("batch_consumer_test")
KEY = "thing.happened.v1"


@asynccontextmanager
async def consuming(
    amqp_url: str, prefix: str, handler: BatchHandler, bodies: Sequence[bytes]
) -> AsyncIterator[tuple[BatchConsumer, aio_pika.abc.AbstractQueue, aio_pika.abc.AbstractQueue]]:
    """Declare the queue, fill it with ``bodies`` while nobody consumes, then consume.

    Yields the consumer, the queue and its dead-letter queue (passively declared).
    """
    topology = Topology(prefix=prefix, delivery_limit=5)
    queue = consumer_queue(topology, "annotation", "on_thing", KEY)
    exchange = events_exchange(topology, "producer")
    broker = RabbitBroker(amqp_url, publisher_confirms=True, logger=None)

    def new_consumer() -> BatchConsumer:
        return BatchConsumer(
            amqp_url=amqp_url,
            broker=broker,
            topology=topology,
            consumer="annotation",
            handler_name="on_thing",
            queue=queue,
            exchange=exchange,
            handler=handler,
            metrics=METRICS,
            prefetch=100,
            max_batch=20,
            writers=2,
        )

    connection = await aio_pika.connect_robust(amqp_url)
    consumer = new_consumer()
    try:
        await broker.connect()
        await declare_dead_letter(broker, topology, "annotation", [queue.name])
        await consumer.start()
        await consumer.stop()
        for body in bodies:
            await publish_raw(amqp_url, exchange.name, KEY, body)
        consumer = new_consumer()
        await consumer.start()
        channel = await connection.channel()
        declared = await channel.declare_queue(queue.name, passive=True)
        dlq = await channel.declare_queue(topology.dead_letter_queue(queue.name), passive=True)
        yield consumer, declared, dlq
    finally:
        await consumer.stop()
        await broker.stop()
        await connection.close()
        await delete_names(
            amqp_url,
            [queue.name, topology.dead_letter_queue(queue.name)],
            [exchange.name, topology.dead_letter_exchange("annotation")],
        )


async def _depth(queue: aio_pika.abc.AbstractQueue) -> int:
    declared = await queue.channel.declare_queue(queue.name, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def test_batches_are_settled_by_outcome_and_nothing_is_left_unacknowledged(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    bodies = [f"ok-{n}".encode() for n in range(60)] + [b"poison", b"flaky"]
    batches: list[list[bytes]] = []
    attempts: dict[bytes, int] = {}

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        batches.append(list(batch))
        outcomes: list[Outcome] = []
        for body in batch:
            attempts[body] = attempts.get(body, 0) + 1
            if body == b"poison":
                outcomes.append(DeadLetter("poison: cannot be parsed"))
            elif body == b"flaky" and attempts[body] == 1:
                outcomes.append(Retry("database restarting"))
            else:
                outcomes.append(HANDLED)
        await asyncio.sleep(0)
        return outcomes

    async with consuming(amqp_url, unique_name("bc") + ".", handler, bodies) as (
        consumer,
        queue,
        dlq,
    ):

        async def all_handled() -> bool:
            return attempts.get(b"flaky") == 2 and all(b in attempts for b in bodies)

        await wait_until(all_handled, message="every message handled, the flaky one twice")

        async def dead_lettered() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await dlq.get(fail=False, no_ack=True)

        dead = await wait_until(dead_lettered, message="poison message dead-lettered")
        await consumer.stop()  # unacknowledged deliveries would now be back in the queue

        assert await _depth(queue) == 0
    assert dead.body == b"poison"
    assert dead.headers[DEAD_LETTER_REASON_HEADER] == "poison: cannot be parsed"
    assert all(attempts[b] == 1 for b in bodies if b != b"flaky")
    assert max(len(batch) for batch in batches) > 1
    assert max(len(batch) for batch in batches) <= 20


async def test_a_crashing_handler_gets_its_batch_again(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    bodies = [f"m-{n}".encode() for n in range(10)]
    calls = 0
    handled: list[bytes] = []

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database is down")
        handled.extend(batch)
        return [HANDLED] * len(batch)

    async with consuming(amqp_url, unique_name("bc") + ".", handler, bodies) as (
        consumer,
        queue,
        _,
    ):

        async def all_handled() -> bool:
            return set(handled) == set(bodies)

        await wait_until(all_handled, message="every message handled after the crash")
        await consumer.stop()
        assert await _depth(queue) == 0
    assert calls >= 2
