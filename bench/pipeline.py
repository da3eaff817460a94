"""Pipelines: items/s through Dataset -> Predict -> Task next to the plain trigger path.

Against the stack ``make bench`` started, in a schema and topology prefix of its own
(removed afterwards); the router runs in this process. The model service is warm: a
stand-in replica consumes its predict queue and answers each request at once with a
``prediction.completed.v1`` (confidence 0.95), so both figures measure the router's
own path, not Triton.

- ``pipeline.trigger_path``: item events per second from the router starting to consume
  a preloaded backlog until every execution is ``success`` (routed, predict request
  published, prediction recorded): an ``Always`` trigger on a model service.
- ``pipeline.throughput``: the same backlog through a running pipeline (its dataset
  node's trigger, a predict node on the same service, an auto-accepting task node)
  until every item's ``add_task_item.v1`` command reached the annotation service's
  command exchange (entered, predicted, the edge evaluated, the task node's command
  published). Baseline: the trigger path of the same run; target >= 0.8.

A warm-up round goes through both paths before either is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench import results
from bench._servers import queue_depth
from bench.settings import BenchSettings
from bench.trigger_router import (
    _declare_predict_queue,
    _item,
    _preload,
    _router,
    _router_settings,
    _setup_service,
)
from common.consumer import BatchConsumer
from common.contracts import (
    ItemCreated,
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
    PredictRequest,
)
from common.envelope import make_event
from common.messaging import parse_event
from common.service import runtime_of
from common.testing.broker import delete_names
from common.topology import ANNOTATION, MODEL_SERVING, Topology
from trigger_router_service.deps import Deps as RouterDeps
from trigger_router_service.domain.pipelines import PipelineDefinition, PipelineStatus
from trigger_router_service.domain.triggers import TriggerSpec
from trigger_router_service.repository import Repository

ORDER = 45
TIMEOUT_S = 600.0

ITEMS = 1000
WARMUP = 100
MAX_S = 240.0
TARGET_RATIO = 0.8

TRIGGER_PATH = "pipeline.trigger_path"
THROUGHPUT = "pipeline.throughput"

TRIGGER_DATASET = "ds_bench_trigger"
PIPELINE_DATASET = "ds_bench_pipeline"


@contextlib.asynccontextmanager
async def _stand_in_replica(amqp_url: str, topology: Topology, queue: str) -> AsyncIterator[None]:
    """A warm replica: answers each predict request with a confident prediction."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=512)
        publish = await connection.channel(publisher_confirms=True)
        events = await publish.declare_exchange(
            topology.events_exchange(MODEL_SERVING), aio_pika.ExchangeType.TOPIC, durable=True
        )

        async def answer(message: AbstractIncomingMessage) -> None:
            request = parse_event(message.body, PredictRequest).data
            now = datetime.now(UTC)
            completed = make_event(
                PredictionCompleted(
                    execution_id=request.execution_id,
                    service_id=request.service_id,
                    project_id=request.project_id,
                    dataset_id=request.item.dataset_id,
                    item_id=request.item.id,
                    replica_id="rep_bench",
                    model=ModelRef(name="bench", model_id="mdl_bench", version="1"),
                    annotations=[
                        PredictedAnnotation(type="classification", label="7", confidence=0.95)
                    ],
                    started_at=now,
                    finished_at=now,
                    origin=request.origin,
                ),
                source="/bench/replica",
            )
            await events.publish(
                aio_pika.Message(
                    completed.to_json_bytes(),
                    message_id=completed.id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=completed.routing_key,
            )
            await message.ack()

        declared = await consume.declare_queue(queue, passive=True)
        tag = await declared.consume(answer)
        try:
            yield
        finally:
            await declared.cancel(tag)
    finally:
        await connection.close()


async def _commands_queue(amqp_url: str, topology: Topology) -> str:
    """A queue taking add_task_item.v1 off annotation.commands, as the annotation
    service's own does."""
    name = f"{topology.prefix}bench.add_task_item"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            topology.commands_exchange(ANNOTATION), aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, routing_key="add_task_item.v1")
    finally:
        await connection.close()
    return name


def _bodies(project_id: str, dataset_id: str, count: int) -> list[bytes]:
    return [
        make_event(
            ItemCreated(item=_item(project_id, n).model_copy(update={"dataset_id": dataset_id})),
            source="/bench",
        ).to_json_bytes()
        for n in range(count)
    ]


async def _through(
    amqp_url: str,
    consumer: BatchConsumer,
    exchange: str,
    bodies: Sequence[bytes],
    done: Callable[[], Awaitable[int]],
) -> float:
    """Preload ``bodies`` with the item consumer stopped, start it, and wait for
    ``done()`` to reach ``len(bodies)``; the rate in items/s."""
    await consumer.stop()
    before = await done()
    await _preload(amqp_url, exchange, bodies, "item.created.v1")
    started = time.monotonic()
    await consumer.start()
    deadline = started + MAX_S
    while await done() - before < len(bodies):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(bodies)} items did not get through in {MAX_S:.0f} s")
        await asyncio.sleep(0.02)
    return len(bodies) / (time.monotonic() - started)


async def run() -> None:
    """Trigger path and pipeline path through the same warm service, same run."""
    config = BenchSettings()
    suffix = uuid.uuid4().hex[:10]
    settings = _router_settings(config, f"bench_pl_{suffix}", f"benchpl{suffix}.")
    project_id = f"prj_bench_{suffix}"
    async with _router(settings) as app:
        runtime = runtime_of(app)
        deps = runtime.deps_as(RouterDeps)
        repo: Repository = deps.repo
        topology = runtime.topology
        service_id = await _setup_service(repo, project_id)
        predict_queue = await _declare_predict_queue(settings.amqp, topology, service_id)
        commands = await _commands_queue(settings.amqp, topology)
        await repo.create_trigger(
            project_id,
            "bench-trigger",
            True,
            TriggerSpec.model_validate(
                {
                    "actions": ["Created"],
                    "execution_mode": "Always",
                    "filter": {"dataset_id": TRIGGER_DATASET},
                    "operation": {"type": "predict", "service_id": service_id},
                }
            ),
        )
        definition = PipelineDefinition.model_validate(
            {
                "name": "bench-pipeline",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": PIPELINE_DATASET}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {
                        "id": "done",
                        "type": "task",
                        "config": {"task_id": "tsk_bench", "auto_accept": True},
                    },
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "done"}],
            }
        )
        pipeline = await repo.create_pipeline(project_id, definition, PIPELINE_DATASET)
        await repo.set_pipeline_status(project_id, pipeline.id, PipelineStatus.RUNNING)

        async def trigger_successes() -> int:
            count = await runtime.pool.fetchval(
                "SELECT count(*) FROM executions WHERE status = 'success' AND trigger_id IS NOT NULL"
            )
            return int(count)

        async def task_commands() -> int:
            return await queue_depth(settings.amqp, commands)

        exchange = topology.events_exchange("dataset")
        consumer = deps.item_consumer
        try:
            async with _stand_in_replica(settings.amqp, topology, predict_queue):
                for count in (WARMUP, ITEMS):
                    trigger = await _through(
                        settings.amqp,
                        consumer,
                        exchange,
                        _bodies(project_id, TRIGGER_DATASET, count),
                        trigger_successes,
                    )
                    through = await _through(
                        settings.amqp,
                        consumer,
                        exchange,
                        _bodies(project_id, PIPELINE_DATASET, count),
                        task_commands,
                    )
        finally:
            await delete_names(settings.amqp, [commands], [topology.commands_exchange(ANNOTATION)])
    results.record(TRIGGER_PATH, trigger, "items/s")
    results.record(THROUGHPUT, through, "items/s", TRIGGER_PATH, trigger, TARGET_RATIO)
