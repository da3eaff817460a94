"""``common.subscriber.subscribe``: a typed handler with parsing, dead letters and metrics
around it. The same test body runs on FastStream's in-memory ``TestRabbitBroker`` and on
the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.rabbit import (
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
    TestRabbitBroker,
)
from faststream.rabbit.schemas import QueueType

from common.consumer import DUPLICATE, DeadLetter, Handled
from common.contracts import ReplicaStarted
from common.envelope import CloudEvent, make_event
from common.errors import ServiceError
from common.messaging import consumer_queue, declare_dead_letter, events_exchange
from common.observability import ServiceMetrics
from common.subscriber import Subscription, subscribe
from common.testing.broker import delete_names
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER, Topology

CONSUMER = "billing"
HANDLER = "on_replica_started"


class RefusedError(ServiceError):
    """A domain rule the handler enforces."""


@dataclass
class Seen:
    handled: list[CloudEvent[ReplicaStarted]] = field(default_factory=list)
    dead: list[tuple[bytes, str]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)


async def on_replica_started(event: CloudEvent[ReplicaStarted], seen: Seen) -> Handled | DeadLetter:
    """The handler under test: a typed function of its contract."""
    if event.data.replica_id == "refused":
        raise RefusedError("replica 'refused' is not billable")
    if event.data.replica_id == "dead":
        return DeadLetter("replica 'dead' is unknown")
    if event.data.replica_id in ("flaky", "down"):
        calls = seen.calls[event.data.replica_id] = seen.calls.get(event.data.replica_id, 0) + 1
        if event.data.replica_id == "down" or calls <= 2:
            raise ConnectionError("database is down")
    if any(e.id == event.id for e in seen.handled):
        return DUPLICATE
    seen.handled.append(event)
    return Handled()


def _event(replica_id: str) -> bytes:
    data = ReplicaStarted(
        service_id="svc",
        project_id="prj",
        replica_id=replica_id,
        started_at=datetime.now(UTC),
    )
    return make_event(data, source="/services/test").to_json_bytes()


@dataclass
class Harness:
    broker: RabbitBroker
    exchange: RabbitExchange
    queue: RabbitQueue
    seen: Seen
    metrics: ServiceMetrics

    async def publish(self, body: bytes) -> None:
        await self.broker.publish(
            body, exchange=self.exchange, routing_key=ReplicaStarted.routing_key, persist=True
        )

    def count(self, label: str) -> float:
        return self.metrics.messages.labels(HANDLER, label)._value.get()


async def _body_and_reason(message: Any) -> tuple[bytes, str]:
    return message.body, str(message.headers.get(DEAD_LETTER_REASON_HEADER, ""))


@contextlib.asynccontextmanager
async def harness(
    kind: str, amqp_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[Harness]:
    topology = Topology(prefix=unique_name("t") + ".", delivery_limit=3, retry_delays=(0.05, 0.1))
    queue = consumer_queue(topology, CONSUMER, HANDLER, ReplicaStarted.routing_key)
    exchange = events_exchange(topology, "model_serving")
    broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
    metrics = ServiceMetrics(f"subscriber_test_{uuid.uuid4().hex[:8]}")
    seen = Seen()

    async def handle(event: CloudEvent[Any]) -> Handled | DeadLetter:
        return await on_replica_started(event, seen)

    subscribe(
        broker,
        topology,
        metrics,
        Subscription(CONSUMER, HANDLER, queue, exchange, (ReplicaStarted,)),
        handle,
        prefetch=8,
        poison=(RefusedError,),
    )
    dlq_name = topology.dead_letter_queue(queue.name)

    @broker.subscriber(
        RabbitQueue(dlq_name, queue_type=QueueType.QUORUM, durable=True, routing_key=dlq_name),
        RabbitExchange(
            topology.dead_letter_exchange(CONSUMER), type=ExchangeType.DIRECT, durable=True
        ),
        decoder=_body_and_reason,
    )
    async def capture(dead: tuple[bytes, str]) -> None:
        seen.dead.append(dead)

    h = Harness(broker, exchange, queue, seen, metrics)
    if kind == "memory":
        async with TestRabbitBroker(broker):
            yield h
        return
    await broker.connect()
    await declare_dead_letter(broker, topology, CONSUMER, [queue.name])
    await broker.start()
    try:
        yield h
    finally:
        await broker.stop()
        await delete_names(
            amqp_url,
            Topology.queues_of(queue.name, topology.retry_delays),
            [exchange.name, topology.dead_letter_exchange(CONSUMER)],
        )


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_typed_handler_gets_its_contract_and_bad_messages_are_dead_lettered_with_reasons(
    kind: str, amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    async with harness(kind, amqp_url, unique_name) as h:
        good = _event("rep_1")
        await h.publish(good)
        await h.publish(good)  # a redelivery of the same event
        await h.publish(b"{not json")
        await h.publish(_event("refused"))
        await h.publish(_event("dead"))

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.seen.dead) == 3 and h.count("duplicate") == 1

        await wait_until(settled, timeout=20, message="every message settled")

        assert [e.data.replica_id for e in h.seen.handled] == ["rep_1"]
        assert isinstance(h.seen.handled[0].data, ReplicaStarted)
        reasons = sorted(reason for _, reason in h.seen.dead)
        assert reasons[0].startswith("body is not JSON"), reasons
        assert reasons[1:] == ["replica 'dead' is unknown", "replica 'refused' is not billable"]
        assert h.count("ok") == 1
        assert h.count("dead_lettered") == 3
        assert h.count("error") == 0


async def test_a_passing_failure_is_retried_after_a_delay_then_dead_lettered_with_the_error(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    async with harness("rabbitmq", amqp_url, unique_name) as h:
        await h.publish(_event("flaky"))  # fails twice, then succeeds on its second retry
        await h.publish(_event("down"))  # fails every time: 1 try + 2 delayed retries

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.seen.dead) == 1 and len(h.seen.handled) == 1

        await wait_until(settled, timeout=20, message="flaky handled, down dead-lettered")
        assert [e.data.replica_id for e in h.seen.handled] == ["flaky"]
        assert h.seen.calls == {"flaky": 3, "down": 3}  # calls: flaky succeeds on its 3rd
        [(_, reason)] = h.seen.dead
        assert reason == (
            "gave up after 2 delayed retries over 0.15s: ConnectionError: database is down"
        )
        assert h.count("retried") == 4
        assert h.count("dead_lettered") == 1
        assert h.count("ok") == 1
