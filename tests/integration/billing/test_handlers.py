"""Billing's typed handlers as ``handlers.register`` subscribes them, on a real
repository. The same test body runs on FastStream's in-memory ``TestRabbitBroker`` and
on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

import asyncpg
import pytest
from faststream.rabbit import (
    RabbitBroker,
)

from billing_service import handlers
from billing_service.app import MIGRATIONS
from billing_service.repository import Repository
from common.contracts import ModelRef, ReplicaStarted, TaskItemReviewed
from common.db import apply_migrations
from common.envelope import make_event
from common.messaging import events_exchange
from common.observability import ServiceMetrics
from common.outbox import COMMON_MIGRATIONS
from common.testing.handlers import HandlerBus, Kind, handler_bus
from common.testing.waits import wait_until
from common.topology import ANNOTATION, BILLING, Topology

RATES = {"cpu-small": Decimal("0.01")}


@dataclass
class Harness:
    bus: HandlerBus
    repo: Repository

    async def publish(self, producer: str, routing_key: str, body: bytes) -> None:
        await self.bus.publish(events_exchange(self.bus.topology, producer), routing_key, body)

    def dead(self, handler: str) -> list[str]:
        return self.bus.dead_by_queue[self.bus.topology.queue(BILLING, handler)]


@contextlib.asynccontextmanager
async def harness(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pool: asyncpg.Pool,
    schema: str,
) -> AsyncIterator[Harness]:
    await apply_migrations(pool, schema, COMMON_MIGRATIONS, MIGRATIONS)
    topology = Topology(prefix=unique_name("b") + ".", delivery_limit=3)
    repo = Repository(pool, topology, RATES, None)
    broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
    metrics = ServiceMetrics(f"billing_handlers_test_{uuid.uuid4().hex[:8]}")
    queues = handlers.register(broker, topology, repo, metrics, prefetch=8)
    exchanges = {events_exchange(topology, p).name for _, p, _ in handlers.HANDLERS}
    async with handler_bus(
        kind, amqp_url, broker, topology, BILLING, metrics, queues, exchanges
    ) as bus:
        yield Harness(bus, repo)


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_replica_starts_are_metered_and_another_projects_replica_is_dead_lettered(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    pg_schema: str,
) -> None:
    handler = "on_replica_started"
    async with harness(kind, amqp_url, unique_name, pg_pool, pg_schema) as h:
        at = datetime.now(UTC) - timedelta(seconds=5)
        started = make_event(
            ReplicaStarted(
                replica_id="rep_h", service_id="svc_h", project_id="prj_h", started_at=at
            ),
            source="/test",
        )
        earlier = make_event(
            ReplicaStarted(
                replica_id="rep_h",
                service_id="svc_h",
                project_id="prj_h",
                started_at=at - timedelta(seconds=1),
            ),
            source="/test",
        )
        hijack = make_event(
            ReplicaStarted(
                replica_id="rep_h", service_id="svc_x", project_id="prj_other", started_at=at
            ),
            source="/test",
        )
        await h.publish("model_serving", started.routing_key, started.to_json_bytes())
        await h.bus.settled(handler, "ok", 1)
        await h.publish("model_serving", started.routing_key, started.to_json_bytes())
        await h.publish("model_serving", earlier.routing_key, earlier.to_json_bytes())
        await h.publish("model_serving", hijack.routing_key, hijack.to_json_bytes())
        await h.publish("model_serving", "replica.started.v1", b"{not json")
        await h.bus.settled(handler, "ok", 3)
        await h.bus.settled(handler, "dead_lettered", 2)

        async def dead_letters_arrived() -> bool:
            await asyncio.sleep(0)
            return len(h.dead(handler)) == 2

        await wait_until(dead_letters_arrived, timeout=20, message="two dead letters")
        reasons = sorted(h.dead(handler))
        assert reasons[0].startswith("body is not JSON"), reasons
        assert "belongs to project 'prj_h'" in reasons[1], reasons
        row = await h.repo.pool.fetchrow(
            "SELECT project_id, started_at FROM replicas WHERE replica_id = 'rep_h'"
        )
        assert row is not None
        assert (row["project_id"], row["started_at"]) == ("prj_h", at - timedelta(seconds=1))
        assert h.bus.count(handler, "error") == 0


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_a_review_counts_once_per_event_and_the_latest_decision_wins(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    pg_schema: str,
) -> None:
    handler = "on_task_item_reviewed"
    async with harness(kind, amqp_url, unique_name, pg_pool, pg_schema) as h:
        at = datetime(2025, 3, 1, tzinfo=UTC)

        def review(
            status: Literal["approved", "corrected"], seconds: int, task: str = "tsk"
        ) -> bytes:
            data = TaskItemReviewed(
                task_id=task,
                project_id="prj_h",
                item_id="itm",
                status=status,
                reviewer="r@example.com",
                model=ModelRef(name="m", model_id="mdl", version="1"),
                service_id="svc_h",
                accepted_unchanged=status == "approved",
            )
            event = make_event(data, source="/test", time=at + timedelta(seconds=seconds))
            return event.to_json_bytes()

        corrected, approved, older = (
            review("corrected", 1),
            review("approved", 2),
            review("approved", 0),
        )
        nul = review("approved", 3, task="t\x00sk")
        for body in (corrected, approved, approved, older, nul):
            await h.publish(ANNOTATION, "task_item.reviewed.v1", body)
            await asyncio.sleep(0)
        await h.bus.settled(handler, "ok", 2)
        await h.bus.settled(handler, "duplicate", 1)
        await h.bus.settled(handler, "stale", 1)
        await h.bus.settled(handler, "dead_lettered", 1)

        async def dead_letter_arrived() -> bool:
            await asyncio.sleep(0)
            return len(h.dead(handler)) == 1

        await wait_until(dead_letter_arrived, timeout=20, message="the NUL review dead-lettered")
        assert "0x00" in h.dead(handler)[0], h.bus.dead
        row = await h.repo.pool.fetchrow("SELECT status, accepted_unchanged FROM reviews")
        assert row is not None
        assert (row["status"], row["accepted_unchanged"]) == ("approved", True)
        assert await h.repo.pool.fetchval("SELECT count(*) FROM reviews") == 1
