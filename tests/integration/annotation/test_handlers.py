"""The annotation service's typed handlers as ``handlers.register`` subscribes them, on a
real repository. The same test body runs on FastStream's in-memory ``TestRabbitBroker``
and on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from faststream.rabbit import (
    RabbitBroker,
)

from annotation_service import handlers
from annotation_service.app import MIGRATIONS
from annotation_service.repository import Repository
from common.db import apply_migrations
from common.messaging import commands_exchange
from common.observability import ServiceMetrics
from common.outbox import COMMON_MIGRATIONS
from common.testing.handlers import HandlerBus, Kind, handler_bus
from common.testing.waits import wait_until
from common.topology import ANNOTATION, Topology
from tests.integration.annotation.conftest import add_task_item, boxes, item_created

HANDLER = "on_add_task_item"


@dataclass
class Harness:
    bus: HandlerBus
    repo: Repository

    async def send(self, routing_key: str, body: bytes) -> None:
        await self.bus.publish(commands_exchange(self.bus.topology, ANNOTATION), routing_key, body)


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
    repo = Repository(pool, topology)
    broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
    metrics = ServiceMetrics(f"annotation_handlers_test_{uuid.uuid4().hex[:8]}")
    queues = handlers.register(broker, topology, repo, metrics, prefetch=8)
    exchanges = [e.name for e in handlers.exchanges(topology)]
    exchanges.append(commands_exchange(topology, ANNOTATION).name)
    async with handler_bus(
        kind, amqp_url, broker, topology, ANNOTATION, metrics, queues, exchanges
    ) as bus:
        yield Harness(bus, repo)


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_task_items_from_commands_are_added_once_and_bad_commands_dead_lettered(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    pg_schema: str,
) -> None:
    async with harness(kind, amqp_url, unique_name, pg_pool, pg_schema) as h:
        task = await h.repo.create_task("prj_h", "review", "ds_h", None, False, [])
        item = item_created("prj_h", "ds_h", "item_h", "a.png", 32, 16)
        # Item events have a batch consumer of their own (test_item_events.py).
        await h.repo.upsert_items([(item.data.item, False)])
        command = add_task_item(
            "prj_h", task["id"], "ds_h", "item_h", boxes(2), execution_id="exe_h"
        )
        await h.send(command.routing_key, command.to_json_bytes())

        async def added() -> bool:
            await asyncio.sleep(0)
            return h.bus.count(HANDLER, "ok") == 1

        await wait_until(added, timeout=20, message="add_task_item.v1 handled")
        await h.send(command.routing_key, command.to_json_bytes())  # a redelivery
        await h.send(command.routing_key, b"{not json")
        elsewhere = add_task_item("prj_h", task["id"], "ds_other", "item_o", [], execution_id="x")
        await h.send(elsewhere.routing_key, elsewhere.to_json_bytes())

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.bus.dead) == 2 and h.bus.count(HANDLER, "duplicate") == 1

        await wait_until(settled, timeout=20, message="every message settled")

        pool = h.repo.pool
        assert await pool.fetchval("SELECT count(*) FROM task_items") == 1
        assert await pool.fetchval("SELECT count(*) FROM annotations") == 2
        assert await pool.fetchval("SELECT filename FROM items WHERE id = 'item_h'") == "/a.png"
        # No relay runs here: both deliveries' events wait in the outbox, once per id.
        outbox = await pool.fetch("SELECT routing_key FROM outbox ORDER BY routing_key")
        assert [r["routing_key"] for r in outbox] == [
            "annotation.created.v2",
            "task_item.added.v1",
        ]
        reasons = sorted(h.bus.dead)
        assert reasons[0].startswith("body is not JSON"), reasons
        assert "is on dataset 'ds_h', not 'ds_other'" in reasons[1], reasons
        assert h.bus.count(HANDLER, "dead_lettered") == 2
        assert h.bus.count(HANDLER, "error") == 0
