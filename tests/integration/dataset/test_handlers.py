"""``on_ingest_item`` subscribed through ``handlers.subscribe_ingest`` on a real repository
and bucket. The same test body runs on FastStream's in-memory ``TestRabbitBroker`` and on
the real RabbitMQ."""

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

from common.blobs import blob_store
from common.contracts import IngestItem
from common.db import apply_migrations
from common.envelope import make_event
from common.messaging import commands_exchange
from common.observability import ServiceMetrics
from common.outbox import COMMON_MIGRATIONS
from common.s3 import s3_client
from common.settings import S3SettingsMixin
from common.testing.handlers import HandlerBus, Kind, handler_bus
from common.testing.waits import wait_until
from common.topology import DATASET, Topology
from dataset_service import handlers
from dataset_service.adapters.blobs import ItemBlobs
from dataset_service.app import MIGRATIONS
from dataset_service.repository import Repository
from dataset_service.usecases.items import ItemStore
from tests.integration.dataset.conftest import png_bytes


@dataclass
class Harness:
    bus: HandlerBus
    repo: Repository
    blobs: ItemBlobs

    async def publish(self, body: bytes) -> None:
        exchange = commands_exchange(self.bus.topology, DATASET)
        await self.bus.publish(exchange, IngestItem.routing_key, body)


@contextlib.asynccontextmanager
async def harness(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pool: asyncpg.Pool,
    schema: str,
    s3: S3SettingsMixin,
    bucket: str,
) -> AsyncIterator[Harness]:
    await apply_migrations(pool, schema, COMMON_MIGRATIONS, MIGRATIONS)
    topology = Topology(prefix=unique_name("t") + ".", delivery_limit=3)
    repo = Repository(pool, topology)
    blob_settings = S3SettingsMixin(
        s3_endpoint_url=s3.s3_endpoint_url,
        s3_access_key=s3.s3_access_key,
        s3_secret_key=s3.s3_secret_key,
        s3_bucket=bucket,
    )
    async with s3_client(
        s3.s3_endpoint_url, s3.s3_access_key, s3.s3_secret_key, s3.s3_region
    ) as client:
        store_blobs = blob_store(blob_settings)
        blobs = ItemBlobs(client, store_blobs, bucket)
        store = ItemStore(repo, blobs, max_upload_bytes=200_000)
        broker = RabbitBroker(amqp_url, logger=None, publisher_confirms=True)
        metrics = ServiceMetrics(f"dataset_handlers_test_{uuid.uuid4().hex[:8]}")
        queue = handlers.subscribe_ingest(broker, topology, metrics, store, prefetch=8)
        exchange = commands_exchange(topology, DATASET)
        try:
            async with handler_bus(
                kind, amqp_url, broker, topology, DATASET, metrics, [queue], [exchange.name]
            ) as bus:
                yield Harness(bus, repo, blobs)
        finally:
            await store_blobs.close()


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_ingest_commands_register_once_and_bad_ones_are_dead_lettered_with_reasons(
    kind: Kind,
    amqp_url: str,
    unique_name: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    pg_schema: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
) -> None:
    async with harness(
        kind, amqp_url, unique_name, pg_pool, pg_schema, s3_settings, s3_bucket
    ) as h:
        project = await h.repo.create_project(unique_name("acme"))
        dataset = await h.repo.create_dataset(project.id, "photos", "")
        key = (await h.repo.create_api_key(project.id, "uploader")).key
        await h.blobs.put("uploads/a.png", png_bytes(), "image/png")
        command = make_event(
            IngestItem(
                dataset_id=dataset.id,
                s3_key="uploads/a.png",
                name="a.png",
                dir="/in",
                api_key=key,
            ),
            source="/test",
        )
        await h.publish(command.to_json_bytes())

        async def registered() -> bool:
            await asyncio.sleep(0)
            return h.bus.count(handlers.HANDLER, "ok") == 1

        await wait_until(registered, timeout=20, message="ingest_item.v1 handled")
        await h.publish(command.to_json_bytes())  # a redelivery
        await h.publish(b"{not json")
        missing = make_event(
            IngestItem(dataset_id="ds_missing", s3_key="uploads/a.png", name="b.png", api_key=key),
            source="/test",
        )
        await h.publish(missing.to_json_bytes())

        async def settled() -> bool:
            await asyncio.sleep(0)
            return len(h.bus.dead) == 2 and h.bus.count(handlers.HANDLER, "duplicate") == 1

        await wait_until(settled, timeout=20, message="every command settled")

        rows = await h.repo.pool.fetch("SELECT filename FROM items")
        assert [r["filename"] for r in rows] == ["/in/a.png"]
        reasons = sorted(h.bus.dead)
        assert reasons[0].startswith("body is not JSON"), reasons
        assert "ds_missing not found" in reasons[1], reasons
        assert h.bus.count(handlers.HANDLER, "ok") == 1
        assert h.bus.count(handlers.HANDLER, "dead_lettered") == 2
        assert h.bus.count(handlers.HANDLER, "error") == 0
