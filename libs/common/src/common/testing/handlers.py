"""Running a service's message handlers in a test, the way ``handlers.register`` subscribes
them: on FastStream's in-memory ``TestRabbitBroker`` (``kind="memory"``) or on the real
RabbitMQ (``kind="rabbitmq"``), with every dead letter's reason captured.

    broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
    queues = handlers.register(broker, topology, repo, metrics, prefetch=8)
    async with handler_bus(kind, amqp_url, broker, topology, BILLING, metrics, queues) as bus:
        await bus.publish(events_exchange(topology, ANNOTATION), "task_item.reviewed.v1", body)
        await bus.settled("on_task_item_reviewed", "ok", 1)

On RabbitMQ the queues, their dead-letter queues, the service's dead-letter exchange and
the ``exchanges`` given are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from faststream.rabbit import (
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
    TestRabbitBroker,
)
from faststream.rabbit.schemas import QueueType

from common.messaging import declare_dead_letter
from common.observability import ServiceMetrics
from common.testing.broker import delete_names
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER, Topology

Kind = Literal["memory", "rabbitmq"]
OUTCOMES = ("ok", "duplicate", "stale", "dead_lettered", "error")


@dataclass
class HandlerBus:
    """The broker the handlers run on, their metrics and the dead letters they made."""

    broker: RabbitBroker
    topology: Topology
    metrics: ServiceMetrics
    dead: list[str] = field(default_factory=list)
    """Every dead letter's reason, in arrival order."""
    dead_by_queue: dict[str, list[str]] = field(default_factory=dict)
    """The same reasons by the queue that dead-lettered them."""

    async def publish(self, exchange: RabbitExchange, routing_key: str, body: bytes) -> None:
        """Publish ``body`` persistently, as a producing service would."""
        await self.broker.publish(body, exchange=exchange, routing_key=routing_key, persist=True)

    def count(self, handler: str, outcome: str) -> float:
        """How many messages ``handler`` settled with ``outcome`` (``ok``, ``duplicate`` ...)."""
        return float(self.metrics.messages.labels(handler, outcome)._value.get())

    async def settled(self, handler: str, outcome: str, n: int, timeout: float = 20) -> None:
        """Wait until ``handler`` settled at least ``n`` messages with ``outcome``."""

        async def reached() -> bool:
            await asyncio.sleep(0)  # the in-memory broker runs handlers on this loop
            return self.count(handler, outcome) >= n

        await wait_until(
            reached,
            timeout=timeout,
            message=f"{n} {outcome} on {handler} "
            f"(counts: { {x: self.count(handler, x) for x in OUTCOMES} }, dead: {self.dead})",
        )


async def _reason(message: Any) -> str:
    return str(message.headers.get(DEAD_LETTER_REASON_HEADER, ""))


def _capture(bus: HandlerBus, into: list[str]) -> Callable[[str], Awaitable[None]]:
    async def capture(reason: str) -> None:
        into.append(reason)
        bus.dead.append(reason)

    return capture


@contextlib.asynccontextmanager
async def handler_bus(
    kind: Kind,
    amqp_url: str,
    broker: RabbitBroker,
    topology: Topology,
    service: str,
    metrics: ServiceMetrics,
    queues: Sequence[str],
    exchanges: Iterable[str] = (),
) -> AsyncIterator[HandlerBus]:
    """Run the handlers already subscribed on ``broker`` (consuming ``queues``) and capture
    what ``service``'s dead-letter exchange receives for each of them."""
    bus = HandlerBus(broker, topology, metrics)
    dlx = RabbitExchange(
        topology.dead_letter_exchange(service), type=ExchangeType.DIRECT, durable=True
    )
    for queue in queues:
        dlq = topology.dead_letter_queue(queue)
        broker.subscriber(
            RabbitQueue(dlq, queue_type=QueueType.QUORUM, durable=True, routing_key=dlq),
            dlx,
            decoder=_reason,
        )(_capture(bus, bus.dead_by_queue.setdefault(queue, [])))

    if kind == "memory":
        async with TestRabbitBroker(broker):
            yield bus
        return
    await broker.connect()
    await declare_dead_letter(broker, topology, service, queues)
    await broker.start()
    try:
        yield bus
    finally:
        await broker.stop()
        await delete_names(
            amqp_url,
            [name for q in queues for name in topology.queues_of(q, topology.retry_delays)],
            [*exchanges, dlx.name],
        )
