"""The router's typed handlers as ``handlers.register`` subscribes them, on a real
repository. The same test body runs on FastStream's in-memory ``TestRabbitBroker`` and
on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from faststream.rabbit import (
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
    TestRabbitBroker,
)
from faststream.rabbit.schemas import QueueType

from common.contracts import ReplicaStarted, ReplicaStopped
from common.db import apply_migrations
from common.envelope import make_event
from common.messaging import COMMON_MIGRATIONS, declare_dead_letter, events_exchange
from common.observability import ServiceMetrics
from common.testing.broker import delete_names
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER, MODEL_SERVING, TRIGGER_ROUTER, Topology
from trigger_router_service import handlers
from trigger_router_service.app import MIGRATIONS
from trigger_router_service.repository import Repository

HANDLER = "on_replica_event"


@dataclass
class Harness:
    broker: RabbitBroker
    exchange: RabbitExchange
    repo: Repository
    metrics: ServiceMetrics
    dead: list[str] = field(default_factory=list)

    async def publish(self, routing_key: str, body: bytes) -> None:
        await self.broker.publish(
            body, exchange=self.exchange, routing_key=routing_key, persist=True
        )

    def count(self, label: str) -> float:
        return self.metrics.messages.labels(HANDLER, label)._value.get()


async def _reason(message: Any) -> str:
    return str(message.headers.get(DEAD_LETTER_REASON_HEADER, ""))


@contextlib.asynccontextmanager
async def harness(
    kind: str,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pool: asyncpg.Pool,
    schema: str,
) -> AsyncIterator[Harness]:
    await apply_migrations(pool, schema, COMMON_MIGRATIONS, MIGRATIONS)
    topology = Topology(prefix=unique_name("t") + ".", delivery_limit=3)
    repo = Repository(pool, topology, schema)
    broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
    metrics = ServiceMetrics(f"router_handlers_test_{uuid.uuid4().hex[:8]}")
    queues = handlers.register(broker, topology, repo, metrics, prefetch=8)
    h = Harness(broker, events_exchange(topology, MODEL_SERVING), repo, metrics)
    queue = topology.queue(TRIGGER_ROUTER, HANDLER)
    dlq_name = topology.dead_letter_queue(queue)
    dlx = RabbitExchange(
        topology.dead_letter_exchange(TRIGGER_ROUTER), type=ExchangeType.DIRECT, durable=True
    )

    @broker.subscriber(
        RabbitQueue(dlq_name, queue_type=QueueType.QUORUM, durable=True, routing_key=dlq_name),
        dlx,
        decoder=_reason,
    )
    async def capture(reason: str) -> None:
        h.dead.append(reason)

    if kind == "memory":
        async with TestRabbitBroker(broker):
            yield h
        return
    await broker.connect()
    await declare_dead_letter(broker, topology, TRIGGER_ROUTER, queues)
    await broker.start()
    try:
        yield h
    finally:
        await broker.stop()
        exchanges = {events_exchange(topology, p).name for _, p, _, _ in handlers.HANDLERS}
        await delete_names(
            amqp_url,
            [*queues, *(topology.dead_letter_queue(q) for q in queues)],
            [*exchanges, dlx.name],
        )


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_replica_events_are_recorded_once_and_bad_ones_dead_lettered_with_reasons(
    kind: str,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    pg_schema: str,
) -> None:
    async with harness(kind, amqp_url, unique_name, pg_pool, pg_schema) as h:
        started_at = datetime.now(UTC) - timedelta(seconds=5)
        ids = {"service_id": "svc_h", "project_id": "prj_h", "replica_id": "rep_h"}
        started = make_event(ReplicaStarted(**ids, started_at=started_at), source="/test")
        stopped = make_event(
            ReplicaStopped(**ids, started_at=started_at, stopped_at=datetime.now(UTC)),
            source="/test",
        )
        await h.publish(started.routing_key, started.to_json_bytes())

        async def started_recorded() -> bool:
            await asyncio.sleep(0)
            return h.count("ok") == 1

        await wait_until(started_recorded, timeout=20, message="replica.started.v1 handled")
        await h.publish(stopped.routing_key, stopped.to_json_bytes())
        await h.publish(stopped.routing_key, stopped.to_json_bytes())  # a redelivery
        await h.publish("replica.started.v1", b"{not json")
        paused = json.loads(stopped.to_json_bytes())
        paused["type"] = paused["type"].replace("stopped", "paused")
        await h.publish("replica.paused.v1", json.dumps(paused).encode())

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.dead) == 2 and h.count("duplicate") == 1

        await wait_until(settled, timeout=20, message="every message settled")

        state = await h.repo.pool.fetchval(
            "SELECT state FROM replicas WHERE replica_id = $1", ids["replica_id"]
        )
        assert state == "stopped"
        reasons = sorted(h.dead)
        assert reasons[0].startswith("body is not JSON"), reasons
        assert "replica.paused.v1" in reasons[1], reasons
        assert h.count("ok") == 2
        assert h.count("dead_lettered") == 2
        assert h.count("error") == 0
