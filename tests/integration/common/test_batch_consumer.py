"""BatchConsumer on the real broker: batches, one ack per batch, dead letters with a
reason, retries redelivered, a crashing handler loses nothing; lingering batches,
batches settled on their own, deliveries with their headers, a drained stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity
from faststream.rabbit import RabbitBroker

from common.consumer import (
    HANDLED,
    BatchConsumer,
    BatchHandler,
    DeadLetter,
    Delivery,
    Outcome,
    Retry,
)
from common.messaging import consumer_queue, declare_dead_letter, events_exchange
from common.observability import ServiceMetrics
from common.testing.broker import delete_names, publish_raw
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER, RETRIES_HEADER, Topology

METRICS = ServiceMetrics("batch_consumer_test")
KEY = "thing.happened.v1"
RETRY_DELAYS = (0.05, 0.1)


@asynccontextmanager
async def consuming(
    amqp_url: str,
    prefix: str,
    handler: BatchHandler | None,
    bodies: Sequence[bytes],
    **options: Any,
) -> AsyncIterator[tuple[BatchConsumer, aio_pika.abc.AbstractQueue, aio_pika.abc.AbstractQueue]]:
    """Declare the queue, fill it with ``bodies`` while nobody consumes, then consume.

    Yields the consumer, the queue and its dead-letter queue (passively declared).
    ``options`` override the consumer's (``delivery_handler``, ``linger`` ...).
    """
    settings: dict[str, Any] = {"prefetch": 100, "max_batch": 20, "writers": 2, **options}
    if handler is not None:
        settings["handler"] = handler
    topology = Topology(prefix=prefix, delivery_limit=5, retry_delays=RETRY_DELAYS)
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
            metrics=METRICS,
            **settings,
        )

    connection = await aio_pika.connect_robust(amqp_url)
    consumer = new_consumer()
    try:
        await broker.connect()
        await declare_dead_letter(broker, topology, "annotation", [queue.name])
        await BatchConsumer(
            amqp_url=amqp_url,
            broker=broker,
            topology=topology,
            consumer="annotation",
            handler_name="on_thing",
            queue=queue,
            exchange=exchange,
            handler=_never,
            metrics=METRICS,
            prefetch=1,
            max_batch=1,
        ).declare()
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
            Topology.queues_of(queue.name, RETRY_DELAYS),
            [exchange.name, topology.dead_letter_exchange("annotation")],
        )


async def _never(batch: Sequence[bytes]) -> list[Outcome]:
    raise AssertionError("only declares")


async def _depth(amqp_url: str, queue: aio_pika.abc.AbstractQueue) -> int:
    """Ready messages of ``queue``, read by a passive declare on a plain connection: a
    robust channel answers a passive declare of a queue it declared before from its cache
    (aio-pika 9), so its count would be the one of that first declare."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue.name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


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

        assert await _depth(amqp_url, queue) == 0
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
        assert await _depth(amqp_url, queue) == 0
    assert calls >= 2


async def test_lingering_fills_a_batch_from_a_trickle(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    batches: list[list[bytes]] = []

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        batches.append(list(batch))
        return [HANDLED] * len(batch)

    prefix = unique_name("bc") + "."
    async with consuming(amqp_url, prefix, handler, [], max_batch=5, linger=5.0) as (_, q, _):
        for n in range(5):
            await publish_raw(amqp_url, f"{prefix}producer.events", KEY, f"t-{n}".encode())
            await asyncio.sleep(0.02)

        async def handled() -> bool:
            return sum(len(b) for b in batches) == 5

        await wait_until(handled, timeout=4, message="a full batch goes before the linger ends")
        assert await _depth(amqp_url, q) == 0
    assert batches == [[f"t-{n}".encode() for n in range(5)]]


async def test_lingering_ends_once_every_prefetch_slot_is_held(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    batches: list[list[bytes]] = []

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        batches.append(list(batch))
        return [HANDLED] * len(batch)

    bodies = [f"p-{n}".encode() for n in range(3)]
    started = time.monotonic()
    async with consuming(
        amqp_url, unique_name("bc") + ".", handler, bodies, prefetch=3, max_batch=10, linger=60
    ):

        async def handled() -> bool:
            return sum(len(b) for b in batches) == 3

        await wait_until(handled, timeout=20, message="nothing more can arrive: the batch goes")
    assert time.monotonic() - started < 30


async def test_an_idle_consumer_does_not_linger_a_busy_one_does(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    """``linger_when_idle=False``: a lone delivery to an idle consumer goes at once (the
    60 s linger would outlast the test), while a batch is held in the handler the next
    deliveries linger and go together."""
    batches: list[list[bytes]] = []
    release = asyncio.Event()

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        batches.append(list(batch))
        if batch == [b"first"]:
            await release.wait()
        return [HANDLED] * len(batch)

    prefix = unique_name("bc") + "."
    options: dict[str, Any] = {"max_batch": 3, "writers": 2, "linger": 60.0}
    async with consuming(
        amqp_url, prefix, handler, [], linger_when_idle=False, ordered=False, **options
    ):
        exchange = f"{prefix}producer.events"
        await publish_raw(amqp_url, exchange, KEY, b"first")

        async def first_taken() -> bool:
            return batches == [[b"first"]]

        await wait_until(first_taken, timeout=10, message="an idle consumer goes at once")
        for n in range(3):
            await publish_raw(amqp_url, exchange, KEY, f"busy-{n}".encode())
            await asyncio.sleep(0.02)

        async def busy_taken() -> bool:
            return len(batches) == 2

        await wait_until(busy_taken, timeout=10, message="a full batch goes before the linger")
        release.set()
    assert batches[1] == [f"busy-{n}".encode() for n in range(3)]


async def test_unordered_batches_settle_alone_and_see_their_deliveries(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    release = asyncio.Event()
    counts: dict[bytes, list[int | None]] = {}

    async def handler(batch: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for delivery in batch:
            counts.setdefault(delivery.body, []).append(delivery.delivery_count)
            if delivery.body == b"slow":
                await release.wait()
            outcomes.append(
                Retry("once more", delayed=False)
                if len(counts[delivery.body]) == 1 and delivery.body == b"flaky"
                else HANDLED
            )
        return outcomes

    async with consuming(
        amqp_url,
        unique_name("bc") + ".",
        None,
        [b"slow", b"quick", b"flaky"],
        delivery_handler=handler,
        max_batch=1,
        writers=3,
        ordered=False,
    ) as (consumer, queue, _):

        async def only_the_slow_one_held() -> bool:
            return len(counts.get(b"flaky", [])) == 2 and consumer.held == 1

        # Ordered, the quick and flaky batches would wait for the slow one's turn.
        await wait_until(only_the_slow_one_held, message="later batches settled on their own")
        release.set()

        async def none_held() -> bool:
            return consumer.held == 0

        await wait_until(none_held, message="the slow batch settled too")
        await consumer.stop()
        assert await _depth(amqp_url, queue) == 0
    assert counts[b"flaky"] == [None, 1]
    assert counts[b"quick"] == [None]


async def test_a_drained_stop_requeues_what_it_cannot_finish(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    bodies = [f"d-{n}".encode() for n in range(4)]

    async def stuck(batch: Sequence[bytes]) -> list[Outcome]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with consuming(
        amqp_url, unique_name("bc") + ".", stuck, bodies, max_batch=2, writers=1
    ) as (consumer, queue, _):

        async def all_held() -> bool:
            return consumer.held == 4

        await wait_until(all_held, message="every message delivered")
        requeued = await consumer.stop(drain=0.2)
        back: list[bytes] = []

        async def all_back() -> bool:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                back.append(message.body)
            return len(back) == 4

        await wait_until(all_back, message="the held messages are back in the queue")
    assert sorted(back) == bodies
    assert requeued == 4


async def test_a_queue_declared_elsewhere_is_consumed_passively(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    topology = Topology(prefix=unique_name("bc") + ".", delivery_limit=5)
    broker = RabbitBroker(amqp_url, logger=None)
    consumer = BatchConsumer(
        amqp_url=amqp_url,
        broker=broker,
        topology=topology,
        consumer="annotation",
        handler_name="on_thing",
        queue=consumer_queue(topology, "annotation", "missing", KEY),
        exchange=None,
        handler=_never,
        metrics=METRICS,
        prefetch=1,
        max_batch=1,
    )
    with pytest.raises(ChannelNotFoundEntity):
        await consumer.declare()
    await consumer.stop()


async def test_a_retry_waits_in_a_retry_queue_and_its_last_error_is_the_dead_letter_reason(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    seen: list[tuple[bytes, int | None, object]] = []

    async def handler(batch: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for delivery in batch:
            seen.append(
                (delivery.body, delivery.delivery_count, delivery.headers.get(RETRIES_HEADER))
            )
            outcomes.append(Retry("Triton is unreachable"))
        return outcomes

    async with consuming(
        amqp_url, unique_name("bc") + ".", None, [b"down"], delivery_handler=handler
    ) as (consumer, queue, dlq):

        async def dead_lettered() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await dlq.get(fail=False, no_ack=True)

        dead = await wait_until(dead_lettered, message="dead-lettered once its retries are spent")
        await consumer.stop()
        assert await _depth(amqp_url, queue) == 0
    # A first try and one try per delay, each a fresh delivery (the delivery limit is not
    # spent on them), numbered in a header of the project's own.
    assert seen == [(b"down", None, None), (b"down", None, 1), (b"down", None, 2)]
    assert dead.body == b"down"
    assert dead.headers[DEAD_LETTER_REASON_HEADER] == (
        "gave up after 2 delayed retries over 0.15s: Triton is unreachable"
    )


async def test_bindings_bring_several_routing_keys_to_one_queue(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    got: list[bytes] = []

    async def handler(batch: Sequence[bytes]) -> list[Outcome]:
        got.extend(batch)
        return [HANDLED] * len(batch)

    prefix = unique_name("bc") + "."
    exchange = events_exchange(Topology(prefix=prefix), "producer").name
    async with consuming(
        amqp_url, prefix, handler, [b"own-key"], bindings=("other.happened.v1", KEY)
    ) as (consumer, queue, _):
        await publish_raw(amqp_url, exchange, "other.happened.v1", b"other-key")
        await publish_raw(amqp_url, exchange, "unbound.happened.v1", b"unbound-key")

        async def both() -> bool:
            return len(got) >= 2

        await wait_until(both, message="a message on each bound key")
        await consumer.stop()
        assert await _depth(amqp_url, queue) == 0
    assert sorted(got) == [b"other-key", b"own-key"]
