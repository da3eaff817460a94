"""The composition root every service builds on.

``build_service_app`` returns a FastAPI app whose lifespan creates the database
pool (migrations applied), the FastStream broker with the service's handlers,
the outbox relay and the health/metrics routes, and tears them down in reverse.
Nothing is created at import time. Every app refuses hostile input with a 4xx and
documents its error answers (``common.http_errors``) and serves ``/docs`` and
``/redoc`` without a CDN (``common.docs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue

from common.consumer import BatchConsumer, BatchHandler
from common.db import apply_migrations, create_pool
from common.dead_letters import DeadLetters
from common.docs import install_offline_docs
from common.errors import ServiceError
from common.http_errors import check_parameters, install_error_handling
from common.messaging import declare_dead_letter, delete_topology
from common.observability import (
    ReadinessCheck,
    ServiceMetrics,
    TimingMiddleware,
    configure_logging,
    health_router,
)
from common.outbox import COMMON_MIGRATIONS, OutboxRelay
from common.settings import BaseServiceSettings
from common.topology import Topology

log = logging.getLogger(__name__)

SHUTDOWN_STEP_S = 10.0
"""How long one step of a service's shutdown (its consumers, the broker, the relay, the
pool, a background job) may take before the next one goes on without it."""


async def shutdown_step(
    name: str, step: Callable[[], Awaitable[object]], timeout: float = SHUTDOWN_STEP_S
) -> bool:
    """Await one shutdown step, bounded: a step that overruns or fails is logged, and the
    shutdown goes on (one hung close held a process, and a test's teardown, for good).
    Whether it finished."""
    try:
        await asyncio.wait_for(step(), timeout)
    except TimeoutError:
        log.warning("shutdown: %s did not finish within %.0f s; going on", name, timeout)
        return False
    except Exception:
        log.exception("shutdown: %s failed; going on", name)
        return False
    return True


S = TypeVar("S", bound=BaseServiceSettings)
D = TypeVar("D")

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Background:
    """Background work of a service: started once the broker, the batch consumers and
    the outbox relay run, stopped (in reverse order of registration) before them."""

    name: str
    start: Hook | None
    stop: Hook


@dataclass
class ServiceRuntime:
    """What a running service holds; handlers and routes receive it explicitly.

    ``setup`` returns the service's own typed, frozen dependencies object (its
    repository, clients of other services ...); routes read it with
    :func:`dependencies`, nothing looks it up by name.
    """

    name: str
    settings: BaseServiceSettings
    topology: Topology
    pool: asyncpg.Pool
    broker: RabbitBroker
    relay: OutboxRelay
    metrics: ServiceMetrics
    consumer_queues: list[str] = field(default_factory=list)
    """Queues this service consumes (their dead-letter queues are declared at start)."""
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    """Extra readiness checks (S3, Triton ...)."""
    deps: object = None
    """What ``setup`` returned: the service's dependencies (read with :meth:`deps_as`)."""
    background: list[Background] = field(default_factory=list)
    """Background work started after the broker and stopped before it (:meth:`on_start`)."""
    batch_consumers: list[BatchConsumer] = field(default_factory=list)
    """Hot queues consumed in batches (started after the broker, stopped before it); their
    queues belong in ``consumer_queues`` too."""
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    """Closed on shutdown; ``setup`` enters its clients here."""
    dead_letters: DeadLetters | None = None
    """The dead letters of ``consumer_queues`` (built once ``setup`` returned): what
    ``common.dead_letters.dead_letters_router`` lists and replays."""

    def deps_as(self, cls: type[D]) -> D:
        """The service's dependencies, checked to be a ``cls``."""
        if not isinstance(self.deps, cls):
            raise TypeError(f"{self.name}: dependencies are {type(self.deps).__name__}, not {cls}")
        return self.deps

    def on_start(self, name: str, start: Hook | None, stop: Hook) -> None:
        """Run ``start`` once the service's messaging runs and ``stop`` before it stops
        (``start`` may be ``None`` for work ``setup`` already began)."""
        self.background.append(Background(name, start, stop))

    def consume_in_batches(
        self,
        queue: RabbitQueue,
        exchange: RabbitExchange,
        handler: BatchHandler,
        *,
        handler_name: str,
        prefetch: int,
        max_batch: int,
        writers: int = 1,
        bindings: Sequence[str] = (),
    ) -> BatchConsumer:
        """Consume ``queue`` (bound to ``exchange``, with its own routing key and any
        ``bindings``) with a :class:`BatchConsumer` started and stopped with the service
        (its queue is one of the service's consumer queues); return the consumer."""
        consumer = BatchConsumer(
            amqp_url=self.settings.amqp,
            broker=self.broker,
            topology=self.topology,
            consumer=self.name.replace("-", "_"),
            handler_name=handler_name,
            queue=queue,
            exchange=exchange,
            handler=handler,
            metrics=self.metrics,
            prefetch=prefetch,
            max_batch=max_batch,
            writers=writers,
            bindings=bindings,
        )
        self.batch_consumers.append(consumer)
        self.consumer_queues.append(queue.name)
        return consumer


Setup = Callable[[ServiceRuntime], Awaitable[object]]
"""Builds the service's clients into the runtime and returns its dependencies object."""

_metrics_by_service: dict[str, ServiceMetrics] = {}


def service_metrics(name: str) -> ServiceMetrics:
    """One ``ServiceMetrics`` per service per process (the Prometheus registry is global)."""
    if name not in _metrics_by_service:
        _metrics_by_service[name] = ServiceMetrics(name)
    return _metrics_by_service[name]


def build_service_app(
    name: str,
    settings: BaseServiceSettings,
    *,
    migrations: Path | None = None,
    setup: Setup | None = None,
    routers: Sequence[APIRouter] = (),
    title: str | None = None,
    version: str = "0.1.0",
) -> FastAPI:
    """Build the service's FastAPI app.

    ``setup(runtime)`` runs before the broker starts: it registers subscribers on
    ``runtime.broker``, appends their queue names to ``runtime.consumer_queues``, adds
    readiness checks to ``runtime.checks`` and background work with
    ``runtime.on_start``, and returns the service's dependencies (``runtime.deps``).
    """
    metrics = service_metrics(name)
    checks: dict[str, ReadinessCheck] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.dsn, settings.db_schema)
        dirs = [COMMON_MIGRATIONS, *([migrations] if migrations else [])]
        applied = await apply_migrations(pool, settings.db_schema, *dirs)
        log.info("migrations applied", extra={"applied": applied})
        # FastStream's "Received" / "Processed" lines for every message at DEBUG: at INFO
        # they cost 2-3% of a busy service's CPU and say nothing the metrics do not.
        broker = RabbitBroker(
            settings.amqp, publisher_confirms=True, logger=log, log_level=logging.DEBUG
        )
        relay = OutboxRelay(pool, settings.amqp, poll_seconds=settings.outbox_poll_seconds)
        topology = Topology(
            settings.topology_prefix, settings.delivery_limit, tuple(settings.retry_delays)
        )
        runtime = ServiceRuntime(name, settings, topology, pool, broker, relay, metrics)
        async with runtime.resources:
            if setup is not None:
                runtime.deps = await setup(runtime)
            checks.update(runtime.checks)
            runtime.dead_letters = DeadLetters(
                settings.amqp,
                topology,
                name,
                runtime.consumer_queues,
                scan_limit=settings.dead_letter_scan_limit,
            )
            runtime.on_start("dead letters", runtime.dead_letters.start, runtime.dead_letters.close)
            await broker.connect()
            await declare_dead_letter(
                broker, topology, name.replace("-", "_"), runtime.consumer_queues
            )
            await broker.start()
            for consumer in runtime.batch_consumers:
                await consumer.start()
            await relay.start()
            app.state.runtime = runtime
            try:
                async with contextlib.AsyncExitStack() as background:
                    for work in runtime.background:
                        if work.start is not None:
                            await work.start()
                        background.push_async_callback(shutdown_step, work.name, work.stop)
                    log.info("service started", extra={"port": settings.http_port})
                    yield
            finally:
                for consumer in runtime.batch_consumers:
                    await shutdown_step(f"consumer of {consumer.queue_name}", consumer.stop)
                await shutdown_step("broker", broker.stop)
                await shutdown_step("outbox relay", relay.stop, SHUTDOWN_STEP_S + 10)
                if not await shutdown_step("database pool", pool.close):
                    pool.terminate()  # a connection still checked out: close them all
                if settings.ephemeral_topology:
                    await delete_topology(
                        settings.amqp,
                        runtime.consumer_queues,
                        [topology.dead_letter_exchange(name.replace("-", "_"))],
                        topology.retry_delays,
                    )

    async def database() -> None:
        await app.state.runtime.pool.fetchval("SELECT 1")

    async def broker_check() -> None:
        if not await app.state.runtime.broker.ping(timeout=1.0):
            raise ConnectionError("broker does not answer")

    checks.update({"database": database, "broker": broker_check})

    app = FastAPI(
        title=title or f"prelabel {name}",
        version=version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(check_parameters)],
    )
    install_offline_docs(app)
    install_error_handling(app)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    app.add_middleware(TimingMiddleware, metrics=metrics)
    app.include_router(health_router(checks))
    for router in routers:
        app.include_router(router)
    return app


def runtime_of(app: FastAPI) -> ServiceRuntime:
    """The runtime of a started app."""
    runtime: ServiceRuntime = app.state.runtime
    return runtime


def dependencies(cls: type[D]) -> Callable[[Request], Awaitable[D]]:
    """A FastAPI dependency answering the started service's dependencies, a ``cls``."""

    async def get(request: Request) -> D:
        return runtime_of(request.app).deps_as(cls)

    get.__name__ = f"{cls.__name__.lower()}_of"
    return get


GC_GEN0_THRESHOLD = 10_000
"""Allocations between young-generation collections in a service process (CPython's
default is 700). Handlers that parse and store thousands of messages a second allocate
fast and keep little: collecting less often costs a little memory, not time."""


def tune_gc() -> None:
    """Garbage-collector settings for a long-running service process.

    Everything alive now (imported modules, classes, the app) is moved out of the
    collector's sight with :func:`gc.freeze`, so collections only walk what requests and
    messages allocate; and young collections run every ``GC_GEN0_THRESHOLD`` allocations.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def serve(app: FastAPI, settings: BaseServiceSettings, name: str, *, loop: str = "uvloop") -> None:
    """Run ``app`` with uvicorn on the configured host and port, logging JSON lines.

    ``loop`` is uvicorn's event loop choice: uvloop by default; ``asyncio`` for a service
    whose clients need the standard loop (gRPC's asyncio client).
    """
    import uvicorn

    configure_logging(name, settings.log_level)
    tune_gc()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        root_path=settings.root_path,
        log_config=None,
        access_log=False,
        loop=loop,
        # httptools: the C HTTP parser (uploads, many small calls).
        http="httptools",
        timeout_graceful_shutdown=30,
    )


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment; exit with a clear message when invalid."""
    import sys

    from pydantic import ValidationError

    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [
            f"  {prefix}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        sys.stderr.write("invalid configuration:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from exc
