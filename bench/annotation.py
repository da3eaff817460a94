"""Annotation ingestion: annotations/s stored from prediction.completed.v1 vs PostgreSQL.

``EVENTS`` predictions with ``BOXES`` boxes each are preloaded into the annotation
service's real queue (RabbitMQ), then the real service (``python -m
annotation_service`` in a subprocess, as deployed, with its own schema and topology
prefix) consumes them: parse, store idempotently, write one ``annotation.created.v2``
outbox row per prediction, ack (one ack per batch). The figure is annotations stored
per second, from the start of the first storing transaction to the moment every row
is visible; how long the relay then needs to publish the last events is printed
beside it. The baseline is PostgreSQL inserting the very same rows into a table of
the same shape (same indexes) from one connection with ``executemany``, measured in
the same run; ``COPY`` of the same rows is recorded beside it for reference.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from annotation_service import domain
from annotation_service.app import create_app
from annotation_service.settings import Settings
from bench import results
from bench._process import service_process
from bench._servers import queue_depth
from bench.settings import BenchSettings
from common.contracts import ModelRef, PredictedAnnotation, PredictionCompleted
from common.envelope import CloudEvent, make_event
from common.service import runtime_of
from common.testing.broker import delete_names
from common.topology import ANNOTATION, DATASET, MODEL_SERVING

TIMEOUT_S = 180.0

EVENTS = 5000
BOXES = 10
STORE_MAX_S = 60.0
TARGET_RATIO = 0.5
UNIT = "annotations/s"

INGEST = "annotation.ingest"
EXECUTEMANY = "annotation.postgres_executemany"
COPY = "annotation.postgres_copy"

COLUMNS = (
    "id",
    "project_id",
    "dataset_id",
    "item_id",
    "type",
    "label",
    "coordinates",
    "confidence",
    "text",
    "source",
    "execution_id",
    "idx",
    "service_id",
    "model_name",
    "model_id",
    "model_version",
    "original",
    "created_by",
)


def predictions(count: int, boxes: int) -> list[CloudEvent[Any]]:
    """``count`` prediction envelopes with ``boxes`` boxes each, on distinct items."""
    now = datetime.now(UTC)
    events = []
    for n in range(count):
        execution = f"exe_{uuid.uuid4().hex[:16]}"
        events.append(
            make_event(
                PredictionCompleted(
                    execution_id=execution,
                    service_id="svc_bench",
                    project_id="prj_bench",
                    dataset_id="ds_bench",
                    item_id=f"it_{n}",
                    replica_id="rep_bench",
                    model=ModelRef(name="detector", model_id="mdl_bench", version="1"),
                    annotations=[
                        PredictedAnnotation(
                            type="box",
                            label=f"class_{b % 5}",
                            coordinates=[[b * 3.5, b * 2.0], [b * 3.5 + 40.25, b * 2.0 + 30.5]],
                            confidence=0.5 + b / (2 * boxes),
                        )
                        for b in range(boxes)
                    ],
                    started_at=now,
                    finished_at=now,
                ),
                source="/services/model-serving",
                subject=f"it_{n}",
                correlationid=execution,
            )
        )
    return events


def rows_of(events: list[CloudEvent[Any]]) -> list[tuple[Any, ...]]:
    """The annotation rows the service stores for ``events``, as insert tuples."""
    rows = []
    for event in events:
        for a in domain.annotations_from_prediction(event.data):
            rows.append(
                (
                    a.id,
                    a.project_id,
                    a.dataset_id,
                    a.item_id,
                    a.type,
                    a.label,
                    json.dumps(a.coordinates),
                    a.confidence,
                    a.text,
                    a.source,
                    a.execution_id,
                    a.index,
                    a.service_id,
                    a.model_name,
                    a.model_id,
                    a.model_version,
                    json.dumps(a.original()),
                    a.model_name,
                )
            )
    return rows


async def _publish_all(amqp_url: str, exchange: str, events: list[CloudEvent[Any]]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.get_exchange(exchange)
        for start in range(0, len(events), 200):
            await asyncio.gather(
                *(
                    ex.publish(
                        aio_pika.Message(
                            e.to_json_bytes(),
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=e.id,
                        ),
                        routing_key=e.routing_key,
                    )
                    for e in events[start : start + 200]
                )
            )
    finally:
        await connection.close()


async def measure_ingest(
    settings: BenchSettings, schema: str, prefix: str, events: list[CloudEvent[Any]]
) -> tuple[int, float, float]:
    """Preload ``events`` and let the real service store them.

    Returns (annotations stored, seconds from the first storing transaction to the last
    row, seconds including the service's start-up).
    """
    service_settings = Settings(
        amqp_url=settings.amqp_url,
        database_url=settings.test_database_url,
        db_schema=schema,
        topology_prefix=prefix,
    )
    expected = sum(len(e.data.annotations) for e in events)
    app = create_app(service_settings)
    # A first start declares the queues and bindings; the predictions then wait in the
    # queue while the service is down, and the second start consumes them from a full queue.
    async with app.router.lifespan_context(app):
        queue = runtime_of(app).consumer_queues[0]
    await _publish_all(settings.amqp_url, f"{prefix}{MODEL_SERVING}.events", events)
    deadline = time.monotonic() + 10
    while await queue_depth(settings.amqp_url, queue) < len(events):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{queue} did not fill up with {len(events)} messages")
        await asyncio.sleep(0.05)

    env = {
        "ANNOTATION_AMQP_URL": settings.amqp_url,
        "ANNOTATION_DATABASE_URL": settings.test_database_url,
        "ANNOTATION_DB_SCHEMA": schema,
        "ANNOTATION_TOPOLOGY_PREFIX": prefix,
        "ANNOTATION_LOG_LEVEL": "WARNING",
    }
    conn = await asyncpg.connect(settings.test_database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="prelabel-bench-") as tmp:
            started = time.time()
            async with service_process(
                "annotation_service", "ANNOTATION_", env, Path(tmp) / "annotation.log"
            ):
                stop_at = time.monotonic() + STORE_MAX_S
                while True:
                    stored = await conn.fetchval(f"SELECT count(*) FROM {schema}.annotations")
                    if stored >= expected:
                        finished = time.time()
                        break
                    if time.monotonic() > stop_at:
                        raise RuntimeError(f"only {stored} of {expected} annotations stored")
                    await asyncio.sleep(0.02)
                first_tx: datetime = await conn.fetchval(
                    f"SELECT min(created_at) FROM {schema}.annotations"
                )
                # Not part of the figure: how long the relay takes to publish the last
                # annotation.created.v2 events once every row is stored.
                while await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox"):
                    if time.monotonic() > stop_at:
                        raise RuntimeError("the outbox did not drain in time")
                    await asyncio.sleep(0.02)
                drained = time.time() - finished
    finally:
        await conn.close()
    print(
        f"{INGEST}: {expected} annotations from {len(events)} events; "
        f"outbox drained {drained:.2f} s after the last row"
    )
    return expected, finished - first_tx.timestamp(), finished - started


async def measure_postgres(
    database_url: str, schema: str, rows: list[tuple[Any, ...]]
) -> tuple[float, float]:
    """Seconds to insert ``rows`` into a copy of the annotations table with executemany,
    and with COPY, each from one connection in one transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        placeholders = ", ".join(
            f"${n}::jsonb" if column in ("coordinates", "original") else f"${n}"
            for n, column in enumerate(COLUMNS, start=1)
        )
        timings = []
        for table in ("base_executemany", "base_copy"):
            await conn.execute(
                f"CREATE TABLE {schema}.{table} (LIKE {schema}.annotations INCLUDING ALL)"
            )
            started = time.perf_counter()
            async with conn.transaction():
                if table == "base_executemany":
                    await conn.executemany(
                        f"INSERT INTO {schema}.{table} ({', '.join(COLUMNS)}) "
                        f"VALUES ({placeholders})",
                        rows,
                    )
                else:
                    await conn.copy_records_to_table(
                        table, schema_name=schema, columns=COLUMNS, records=rows
                    )
            timings.append(time.perf_counter() - started)
            # The service stored the very rows the baseline inserts (not just as many).
            same = await conn.fetchval(
                f"""SELECT count(*) FROM {schema}.{table} b JOIN {schema}.annotations a
                    USING (id) WHERE a.coordinates = b.coordinates AND a.label = b.label
                    AND a.confidence = b.confidence AND a.item_id = b.item_id"""
            )
            if same != len(rows):
                raise RuntimeError(f"{same} of {len(rows)} rows in {table} match the service's")
        return timings[0], timings[1]
    finally:
        await conn.close()


async def run() -> None:
    """Measure and record the ingestion rate against PostgreSQL's batched insert rate."""
    settings = BenchSettings()
    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"bench_ann_{tag}", f"bench{tag}."
    events = predictions(EVENTS, BOXES)
    try:
        stored, seconds, with_startup = await measure_ingest(settings, schema, prefix, events)
        ingest = stored / seconds
        print(
            f"{INGEST}: {seconds:.2f} s from the first transaction "
            f"({stored / with_startup:,.0f} annotations/s counting the service start-up)"
        )
        executemany_s, copy_s = await measure_postgres(
            settings.test_database_url, schema, rows_of(events)
        )
        executemany = stored / executemany_s
        copy = stored / copy_s
        print(f"{EXECUTEMANY}: {executemany_s:.2f} s; {COPY}: {copy_s:.2f} s")
        results.record(EXECUTEMANY, executemany, UNIT)
        results.record(COPY, copy, UNIT)
        results.record(INGEST, ingest, UNIT, EXECUTEMANY, executemany, target_ratio=TARGET_RATIO)
    finally:
        conn = await asyncpg.connect(settings.test_database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
        queues = [
            f"{prefix}{ANNOTATION}.on_prediction_completed",
            f"{prefix}{ANNOTATION}.on_item_event",
        ]
        await delete_names(
            settings.amqp_url,
            [*queues, *(f"{q}.dlq" for q in queues)],
            [
                f"{prefix}{ANNOTATION}.events",
                f"{prefix}{ANNOTATION}.dlx",
                f"{prefix}{MODEL_SERVING}.events",
                f"{prefix}{DATASET}.events",
            ],
        )
