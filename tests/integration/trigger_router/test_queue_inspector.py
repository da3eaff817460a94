"""The autoscaler's queue inspector survives the broker dropping its connection."""

from __future__ import annotations

from collections.abc import Callable

import aio_pika

from common.testing.broker import delete_names
from common.testing.waits import wait_until
from trigger_router_service.adapters.queues import QueueInspector


async def test_inspector_reconnects_after_the_broker_drops_its_connection(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("predict")
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.default_exchange.publish(aio_pika.Message(b"work"), routing_key=name)
    inspector = QueueInspector(amqp_url)
    try:
        before = await inspector.stats(name)
        dropped = inspector._connection
        assert dropped is not None
        # What a broker restart looks like to aio-pika: the AMQP connection underneath is
        # gone, while the aio-pika object was never close()d.
        await dropped.transport.connection.close()  # type: ignore[union-attr]
        assert not dropped.is_closed

        async def depth_again() -> tuple[bool, int, int]:
            return await inspector.stats(name)

        after = await wait_until(depth_again, timeout=10, message="inspector answers again")
    finally:
        await inspector.close()
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
        await delete_names(amqp_url, [name], [])
    assert before == (True, 1, 0)
    assert after == (True, 1, 0)
    assert inspector._connection is not dropped
