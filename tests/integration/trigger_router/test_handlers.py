"""The router's typed handlers as ``handlers.register`` subscribes them, on a real
repository. The same test body runs on FastStream's in-memory ``TestRabbitBroker`` and
on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from faststream.rabbit import (
    RabbitBroker,
)

from common.contracts import ReplicaStarted, ReplicaStopped
from common.db import apply_migrations
from common.envelope import make_event
from common.messaging import events_exchange
from common.observability import ServiceMetrics
from common.outbox import COMMON_MIGRATIONS
from common.testing.handlers import HandlerBus, Kind, handler_bus
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING, TRIGGER_ROUTER, Topology
from trigger_router_service import handlers
from trigger_router_service.app import MIGRATIONS
from trigger_router_service.repository import Repository

HANDLER = "on_replica_event"


@dataclass
class Harness:
    bus: HandlerBus
    repo: Repository

    async def publish(self, routing_key: str, body: bytes) -> None:
        await self.bus.publish(events_exchange(self.bus.topology, MODEL_SERVING), routing_key, body)


@contextlib.asynccontextmanager
async def harness(
    kind: Kind,
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
    exchanges = {events_exchange(topology, p).name for _, p, _, _ in handlers.HANDLERS}
    async with handler_bus(
        kind, amqp_url, broker, topology, TRIGGER_ROUTER, metrics, queues, exchanges
    ) as bus:
        yield Harness(bus, repo)


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_replica_events_are_recorded_once_and_bad_ones_dead_lettered_with_reasons(
    kind: Kind,
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
            return h.bus.count(HANDLER, "ok") == 1

        await wait_until(started_recorded, timeout=20, message="replica.started.v1 handled")
        await h.publish(stopped.routing_key, stopped.to_json_bytes())
        await h.publish(stopped.routing_key, stopped.to_json_bytes())  # a redelivery
        await h.publish("replica.started.v1", b"{not json")
        paused = json.loads(stopped.to_json_bytes())
        paused["type"] = paused["type"].replace("stopped", "paused")
        await h.publish("replica.paused.v1", json.dumps(paused).encode())

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.bus.dead) == 2 and h.bus.count(HANDLER, "duplicate") == 1

        await wait_until(settled, timeout=20, message="every message settled")

        state = await h.repo.pool.fetchval(
            "SELECT state FROM replicas WHERE replica_id = $1", ids["replica_id"]
        )
        assert state == "stopped"
        reasons = sorted(h.bus.dead)
        assert reasons[0].startswith("body is not JSON"), reasons
        assert "replica.paused.v1" in reasons[1], reasons
        assert h.bus.count(HANDLER, "ok") == 2
        assert h.bus.count(HANDLER, "dead_lettered") == 2
        assert h.bus.count(HANDLER, "error") == 0
