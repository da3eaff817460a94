"""Trigger-router: routing throughput and scale-from-zero latency on the real stack.

Against the stack ``make bench`` started, each part in a schema, topology prefix (and
bucket) of its own, removed afterwards; the router runs in this process.

- ``trigger_router.routing_in`` / ``trigger_router.routing_out``: item events routed per
  second (consumed, matched against an ``Always`` trigger, execution rows, predict
  requests in the outbox, all committed, then acked) and predict requests per second
  reaching the service's queue (published by the outbox relay with confirms). Events are
  preloaded in the router's queue, then the router consumes. Baseline: a bare aio-pika
  consume -> publish (confirmed) -> ack relay measured in the same run on the same
  queues (item-event queue -> predict exchange -> the service's queue). Target >= 0.6.
- ``trigger_router.wake_requested``: from publishing an item event for a service at 0
  replicas until the scaler backend is asked for a replica (median of several rounds;
  the backend records the call, so this is the router's own path: consume, route,
  commit, NOTIFY, leader, decision); target under 100 ms.
  ``trigger_router.wake_requested_vs_keda`` puts it next to KEDA's default 30 s polling.
- ``trigger_router.cold_start_first_prediction``: the same from 0 with the real local
  backend: a model-serving worker process starts, loads the digits classifier on Triton
  and predicts. Baseline: the model load time (replica process start until its model is
  loaded, from ``replica.started.v1``) + 1 s; ``trigger_router.cold_start_vs_keda``
  puts it next to KEDA's 30 s polling + the same model load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from bench import results
from bench.settings import BenchSettings
from common.consumer import BatchConsumer
from common.contracts import ItemCreated, ItemSnapshot, ServiceDeployed
from common.envelope import make_event, utcnow
from common.s3 import blob_key, delete_bucket, ensure_bucket, s3_client
from common.service import runtime_of
from common.settings import environment_of
from common.testing.broker import delete_names, probe_exchange
from common.topology import BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology
from model_serving_service.deps import Deps as ModelServingDeps
from trigger_router_service.adapters.scalers import LocalScaler, ServiceRef
from trigger_router_service.app import create_app
from trigger_router_service.deps import Deps as RouterDeps
from trigger_router_service.domain.triggers import TriggerSpec
from trigger_router_service.repository import Repository
from trigger_router_service.settings import Settings

ORDER = 40
TIMEOUT_S = 420.0

EVENTS = 5000
RELAY_PREFETCH = 100
THROUGHPUT_MAX_S = 60.0
WAKE_ROUNDS = 7
KEDA_POLLING_S = 30.0
WAKE_TARGET_S = 0.1
COLD_START_SLACK_S = 1.0

ROUTING_IN = "trigger_router.routing_in"
ROUTING_OUT = "trigger_router.routing_out"
BARE_RELAY = "trigger_router.bare_relay"
WAKE = "trigger_router.wake_requested"
WAKE_VS_KEDA = "trigger_router.wake_requested_vs_keda"
COLD_FIRST = "trigger_router.cold_start_first_prediction"
COLD_VS_KEDA = "trigger_router.cold_start_vs_keda"


# --------------------------------------------------------------------------- helpers


def _router_settings(config: BenchSettings, schema: str, prefix: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": config.amqp_url,
        "database_url": config.test_database_url,
        "db_schema": schema,
        "topology_prefix": prefix,
        "outbox_poll_seconds": 0.05,
        "autoscaler_enabled": False,
        # Unused here (no HTTP requests), but a real URL keeps the settings honest.
        "auth_url": "http://127.0.0.1:8081",
    }
    values.update(extra)
    return Settings(**values)


def _item(project_id: str, n: int, metadata: dict[str, Any] | None = None) -> ItemSnapshot:
    now = utcnow()
    return ItemSnapshot(
        id=f"itm_{uuid.uuid4().hex}",
        project_id=project_id,
        dataset_id="ds_bench",
        name=f"{n}.png",
        filename=f"/{n}.png",
        dir="/",
        created_at=now,
        updated_at=now,
        metadata=metadata or {"system": {"mimetype": "image/png", "size": 100}, "user": {}},
    )


async def _declare_predict_queue(amqp_url: str, topology: Topology, service_id: str) -> str:
    """The service's work queue, declared as model-serving declares it on deploy."""
    name = topology.predict_queue(service_id)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            topology.predict_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(
            name, durable=True, arguments=topology.queue_arguments(MODEL_SERVING, name)
        )
        await queue.bind(exchange, routing_key=service_id)
    finally:
        await connection.close()
    return name


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def _wait_depth(
    channel: aio_pika.abc.AbstractChannel, queue: str, at_least: int, timeout: float
) -> float:
    """Poll until ``queue`` holds ``at_least`` messages; return when (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        if await _depth(channel, queue) >= at_least:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue} did not reach {at_least} messages in {timeout}s")
        await asyncio.sleep(0.01)


async def _preload(amqp_url: str, exchange: str, bodies: Sequence[bytes], key: str) -> None:
    """Publish ``bodies`` with pipelined confirms."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        window: list[Any] = []
        for body in bodies:
            window.append(
                ex.publish(
                    aio_pika.Message(
                        body,
                        message_id=uuid.uuid4().hex,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=key,
                )
            )
            if len(window) >= 256:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    finally:
        await connection.close()


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def _names(prefix: str, queues: Sequence[str]) -> tuple[list[str], list[str]]:
    exchanges = [
        f"{prefix}{DATASET}.events",
        f"{prefix}{MODEL_SERVING}.events",
        f"{prefix}{BILLING}.events",
        f"{prefix}{TRIGGER_ROUTER}.events",
        f"{prefix}{TRIGGER_ROUTER}.dlx",
        f"{prefix}{MODEL_SERVING}.predict",
        f"{prefix}{MODEL_SERVING}.dlx",
    ]
    return [*queues, *(f"{q}.dlq" for q in queues)], exchanges


async def _setup_service(repo: Repository, project_id: str, **scaling: Any) -> str:
    service_id = f"svc_bench{uuid.uuid4().hex[:8]}"
    await repo.service_deployed(
        ServiceDeployed(
            service_id=service_id,
            project_id=project_id,
            model_id="mdl_bench",
            status="ready",
            **scaling,
        ),
        datetime.now(UTC),
    )
    return service_id


async def _trigger(repo: Repository, project_id: str, service_id: str) -> None:
    await repo.create_trigger(
        project_id,
        f"bench-{uuid.uuid4().hex[:6]}",
        True,
        TriggerSpec.model_validate(
            {
                "actions": ["Created"],
                "execution_mode": "Always",
                "filter": {"metadata.system.mimetype": "image/*"},
                "operation": {"type": "predict", "service_id": service_id},
            }
        ),
    )


@contextlib.asynccontextmanager
async def _router(settings: Settings, **kwargs: Any) -> AsyncIterator[Any]:
    """The router app started, and every queue of its prefix deleted afterwards."""
    app = create_app(settings, **kwargs)
    queues: list[str] = []
    try:
        async with app.router.lifespan_context(app):
            runtime = runtime_of(app)
            queues = list(runtime.consumer_queues)
            yield app
            repo: Repository = runtime.deps_as(RouterDeps).repo
            services = await repo.pool.fetch("SELECT service_id FROM model_services")
            queues += [runtime.topology.predict_queue(r["service_id"]) for r in services]
    finally:
        names, exchanges = _names(settings.topology_prefix, queues)
        await delete_names(settings.amqp, names, exchanges)
        await _drop_schema(settings.dsn, settings.db_schema)


# --------------------------------------------------------------------------- throughput


async def _bare_relay(amqp_url: str, source: str, exchange: str, key: str, count: int) -> float:
    """Consume ``source``, publish each body to ``exchange`` (confirmed), then ack."""
    connection = await aio_pika.connect(amqp_url)
    try:
        publish = await connection.channel(publisher_confirms=True)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=RELAY_PREFETCH)
        target = await publish.get_exchange(exchange)
        relayed = 0
        finished = asyncio.Event()

        async def relay(message: AbstractIncomingMessage) -> None:
            nonlocal relayed
            await target.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=key,
            )
            await message.ack()
            relayed += 1
            if relayed >= count:
                finished.set()

        queue = await consume.declare_queue(source, passive=True)
        started = time.monotonic()
        tag = await queue.consume(relay)
        await asyncio.wait_for(finished.wait(), THROUGHPUT_MAX_S)
        elapsed = time.monotonic() - started
        await queue.cancel(tag)
        return count / elapsed
    finally:
        await connection.close()


async def routing_throughput(config: BenchSettings) -> None:
    """Router vs bare relay on the same queues."""
    suffix = uuid.uuid4().hex[:10]
    settings = _router_settings(config, f"bench_tr_{suffix}", f"benchtr{suffix}.")
    project_id = f"prj_bench_{suffix}"
    async with _router(settings) as app:
        runtime = runtime_of(app)
        repo: Repository = runtime.deps_as(RouterDeps).repo
        consumer: BatchConsumer = runtime.deps_as(RouterDeps).item_consumer
        service_id = await _setup_service(repo, project_id)
        await _trigger(repo, project_id, service_id)
        predict_queue = await _declare_predict_queue(settings.amqp, runtime.topology, service_id)
        item_exchange = runtime.topology.events_exchange(DATASET)
        bodies = [
            make_event(ItemCreated(item=_item(project_id, n)), source="/bench").to_json_bytes()
            for n in range(EVENTS)
        ]
        connection = await aio_pika.connect(settings.amqp)
        try:
            channel = await connection.channel()
            # Router: preload with its consumer stopped, then let it consume.
            await consumer.stop()
            await _preload(settings.amqp, item_exchange, bodies, "item.created.v1")
            handled = runtime.metrics.messages.labels("on_item_event", "ok")
            before = handled._value.get()
            started = time.monotonic()
            await consumer.start()
            deadline = started + THROUGHPUT_MAX_S
            while handled._value.get() - before < EVENTS:
                if time.monotonic() > deadline:
                    raise TimeoutError("the router did not route every event in time")
                await asyncio.sleep(0.005)
            routed_at = time.monotonic()
            out_at = await _wait_depth(channel, predict_queue, EVENTS, THROUGHPUT_MAX_S)
            rows = await runtime.pool.fetchval("SELECT count(*) FROM executions")
            if rows != EVENTS:
                raise RuntimeError(f"{rows} executions for {EVENTS} events")
            rate_in = EVENTS / (routed_at - started)
            rate_out = EVENTS / (out_at - started)
            queue = await channel.declare_queue(predict_queue, passive=True)
            await queue.purge()

            # Bare relay on the same queues: item-event queue -> predict exchange.
            await consumer.stop()
            await _preload(settings.amqp, item_exchange, bodies, "item.created.v1")
            bare = await _bare_relay(
                settings.amqp,
                consumer.queue_name,
                runtime.topology.predict_exchange,
                service_id,
                EVENTS,
            )
            await _wait_depth(channel, predict_queue, EVENTS, THROUGHPUT_MAX_S)
            await queue.purge()
        finally:
            await connection.close()
    results.record(BARE_RELAY, bare, "msgs/s")
    results.record(ROUTING_IN, rate_in, "events/s", BARE_RELAY, bare, 0.6)
    results.record(ROUTING_OUT, rate_out, "msgs/s", BARE_RELAY, bare, 0.6)


# --------------------------------------------------------------------------- wake-up


class RecordingScaler:
    """A backend that records when it is asked for replicas (and pretends they run)."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, int]] = []
        self._requested: dict[str, int] = {}

    def requested(self, service_id: str) -> int | None:
        return self._requested.get(service_id)

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        self.calls.append((time.monotonic(), service.service_id, replicas))
        self._requested[service.service_id] = replicas

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        return {s.service_id: self._requested.get(s.service_id, 0) for s in services}

    async def sync(self) -> None:
        return None

    async def step_down(self) -> None:
        self._requested.clear()

    async def close(self) -> None:
        return None

    def first_scale_up_after(self, since: float) -> float | None:
        return next((t for t, _, n in self.calls if t >= since and n > 0), None)


async def wake_latency(config: BenchSettings) -> None:
    """Median time from an item event to the backend being asked for a replica."""
    suffix = uuid.uuid4().hex[:10]
    settings = _router_settings(
        config,
        f"bench_trw_{suffix}",
        f"benchtrw{suffix}.",
        autoscaler_enabled=True,
        reconcile_seconds=1.0,
    )
    project_id = f"prj_bench_{suffix}"
    backend = RecordingScaler()
    async with _router(settings, backend=backend) as app:
        runtime = runtime_of(app)
        repo: Repository = runtime.deps_as(RouterDeps).repo
        service_id = await _setup_service(repo, project_id, cooldown_seconds=0.2)
        await _trigger(repo, project_id, service_id)
        predict_queue = await _declare_predict_queue(settings.amqp, runtime.topology, service_id)
        connection = await aio_pika.connect(settings.amqp)
        samples: list[float] = []
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                runtime.topology.events_exchange(DATASET), aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(predict_queue, passive=True)
            for n in range(WAKE_ROUNDS):
                # At rest: 0 replicas asked for, nothing queued.
                await _until(lambda: backend.requested(service_id) == 0, 30, "scaled to 0")
                await asyncio.sleep(0.3)  # let a reconcile pass: the service is idle at 0
                body = make_event(ItemCreated(item=_item(project_id, n)), source="/bench")
                started = time.monotonic()
                await exchange.publish(
                    aio_pika.Message(
                        body.to_json_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    routing_key="item.created.v1",
                )
                await _until(
                    lambda since=started: backend.first_scale_up_after(since) is not None,
                    10,
                    "scale-up",
                )
                asked = backend.first_scale_up_after(started)
                assert asked is not None
                samples.append(asked - started)
                # The "replica" takes the request; the service cools down to 0 again.
                await _wait_depth(channel, predict_queue, 1, 10)
                await queue.purge()
        finally:
            await connection.close()
    median = statistics.median(samples)
    results.record(
        WAKE, median * 1000, "ms", "target", WAKE_TARGET_S * 1000, 1.0, higher_is_better=False
    )
    results.record(
        WAKE_VS_KEDA,
        median * 1000,
        "ms",
        f"KEDA default polling ({KEDA_POLLING_S:g} s)",
        KEDA_POLLING_S * 1000,
        higher_is_better=False,
    )
    print(
        f"wake-up samples (ms): {', '.join(f'{s * 1000:.1f}' for s in samples)}; "
        f"max {max(samples) * 1000:.1f}"
    )


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.002)


# --------------------------------------------------------------------------- cold start


class TimedLocalScaler(LocalScaler):
    """The real local backend, noting when it is asked to scale up."""

    asked: list[float]

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        if replicas > (self.requested(service.service_id) or 0):
            self.asked.append(time.monotonic())
        await super().scale(service, replicas)


def _digit_png() -> bytes:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    pixels = (255 - digits.data[-1].reshape(8, 8) / 16.0 * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


async def cold_start(config: BenchSettings) -> None:
    """A real worker process from 0: start, model load on Triton, first prediction."""
    from model_serving_service.app import create_app as create_model_serving
    from model_serving_service.domain.specs import SpecOverrides

    suffix = uuid.uuid4().hex[:10]
    prefix, bucket = f"benchcs{suffix}.", f"bench-cs-{suffix}"
    project_id = f"prj_bench_{suffix}"
    ms_settings = config.model_serving(schema=f"bench_ms_{suffix}", prefix=prefix, bucket=bucket)
    worker_env = environment_of(ms_settings)
    backend = TimedLocalScaler(
        module="model_serving_service.worker", extra_env=worker_env, prewarm=True
    )
    backend.asked = []
    router_settings = _router_settings(
        config, f"bench_trc_{suffix}", prefix, autoscaler_enabled=True
    )
    ms_app = create_model_serving(ms_settings)
    triton_names: list[str] = []
    service_id = ""
    try:
        async with (
            s3_client(config.s3_endpoint_url, config.s3_access_key, config.s3_secret_key) as s3,
            probe_exchange(config.amqp_url, f"{prefix}{MODEL_SERVING}.events") as events,
            ms_app.router.lifespan_context(ms_app),
            _router(router_settings, backend=backend) as app,
        ):
            await ensure_bucket(s3, bucket)
            usecases = runtime_of(ms_app).deps_as(ModelServingDeps).usecases
            model = await usecases.install(
                project_id,
                "digits-classifier",
                name=f"digits-{suffix}",
                overrides=SpecOverrides(),
            )
            triton_names.append(model.triton_name)
            service = await usecases.deploy(
                project_id, model.id, None, {"cooldown_seconds": 600, "drain_seconds": 10}
            )
            service_id = service.id
            repo: Repository = runtime_of(app).deps_as(RouterDeps).repo

            async def ready() -> bool:
                return await repo.service_in_project(project_id, service_id) == "ready"

            await _until_async(ready, 120, "service ready in the router")
            await _trigger(repo, project_id, service_id)
            data = _digit_png()
            key = blob_key(hashlib.sha256(data).hexdigest())
            await s3.put_object(Bucket=bucket, Key=key, Body=data)
            item = _item(
                project_id,
                0,
                {"system": {"mimetype": "image/png", "size": len(data), "blob_key": key}},
            )
            event = make_event(ItemCreated(item=item), source="/bench")
            connection = await aio_pika.connect(config.amqp_url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.declare_exchange(
                    f"{prefix}{DATASET}.events", aio_pika.ExchangeType.TOPIC, durable=True
                )
                started = time.monotonic()
                await exchange.publish(
                    aio_pika.Message(
                        event.to_json_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    routing_key="item.created.v1",
                )
                [done] = await events.wait_for(
                    1, timeout=180, routing_key="prediction.completed.v1"
                )
                first = time.monotonic() - started
            finally:
                await connection.close()
            [replica] = events.of("replica.started.v1")
            process_started = datetime.fromisoformat(replica.body["data"]["started_at"])
            model_ready = datetime.fromisoformat(replica.body["time"])
            model_load = (model_ready - process_started).total_seconds()
            asked = backend.asked[0] - started
            assert done.body["data"]["annotations"], done.body
    finally:
        await _cleanup_cold_start(
            config, ms_settings, triton_names, prefix, [service_id], s3_bucket=bucket
        )
    results.record(
        COLD_FIRST,
        first,
        "s",
        "model load + 1 s",
        model_load + COLD_START_SLACK_S,
        1.0,
        higher_is_better=False,
    )
    results.record(
        COLD_VS_KEDA,
        first,
        "s",
        f"KEDA polling {KEDA_POLLING_S:g} s + model load",
        KEDA_POLLING_S + model_load,
        higher_is_better=False,
    )
    print(
        f"cold start: replica requested after {asked * 1000:.1f} ms; model load "
        f"{model_load:.2f} s (replica process start -> model loaded); first prediction "
        f"{first:.2f} s after the item event"
    )


async def _until_async(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.05)


async def _cleanup_cold_start(
    config: BenchSettings,
    ms_settings: Any,
    triton_names: list[str],
    prefix: str,
    services: list[str],
    *,
    s3_bucket: str,
) -> None:
    from model_serving_service.adapters.triton import ModelRepository, TritonControl

    control = TritonControl(config.triton_http_url, load_timeout=60)
    try:
        for name in triton_names:
            with contextlib.suppress(Exception):
                await control.unload(name)
            with contextlib.suppress(Exception):
                await ModelRepository(config.triton_model_repository).remove(name)
    finally:
        await control.close()
    topology = Topology(prefix)
    queues = [topology.predict_queue(s) for s in services if s]
    names, exchanges = _names(prefix, queues)
    await delete_names(config.amqp_url, names, exchanges)
    await _drop_schema(config.test_database_url, ms_settings.db_schema)
    async with s3_client(config.s3_endpoint_url, config.s3_access_key, config.s3_secret_key) as s3:
        with contextlib.suppress(Exception):
            await delete_bucket(s3, s3_bucket)


async def run() -> None:
    """Routing throughput, router wake-up latency, and a real cold start."""
    config = BenchSettings()
    await routing_throughput(config)
    await wake_latency(config)
    await cold_start(config)
