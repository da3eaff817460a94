"""A handler that keeps failing never loses its message: requeued, then dead-lettered."""

from __future__ import annotations

from collections.abc import Callable

import aio_pika
from faststream.rabbit import RabbitBroker

from common.messaging import consumer_queue, declare_dead_letter, events_exchange, raw_body
from common.testing.broker import delete_names, publish_raw
from common.testing.waits import wait_until
from common.topology import Topology


async def test_failing_handler_message_reaches_the_dlq_after_the_delivery_limit(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    topology = Topology(prefix=unique_name("t") + ".", delivery_limit=3)
    queue = consumer_queue(topology, "billing", "on_thing", "thing.happened.v1")
    exchange = events_exchange(topology, "producer")
    attempts: list[bytes] = []
    broker = RabbitBroker(amqp_url, logger=None)

    @broker.subscriber(queue, exchange, retry=True, decoder=raw_body)
    async def handler(body: bytes) -> None:
        attempts.append(body)
        raise RuntimeError("database is down")

    await broker.connect()
    await declare_dead_letter(broker, topology, "billing", [queue.name])
    await broker.start()
    try:
        await publish_raw(amqp_url, exchange.name, "thing.happened.v1", b'{"n": 1}')
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel()
        dlq = await channel.declare_queue(topology.dead_letter_queue(queue.name), passive=True)

        async def dead_lettered() -> bool:
            message = await dlq.get(fail=False)
            if message is None:
                return False
            await message.ack()
            return message.body == b'{"n": 1}'

        await wait_until(dead_lettered, timeout=20, message="message dead-lettered")
        await connection.close()
    finally:
        await broker.stop()
        await delete_names(
            amqp_url,
            [queue.name, topology.dead_letter_queue(queue.name)],
            [exchange.name, topology.dead_letter_exchange("billing")],
        )
    # The first delivery plus the redeliveries the limit allows.
    assert len(attempts) == 1 + 3
