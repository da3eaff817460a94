"""One replica of one model service: its composition root and lifecycle (see the
package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
from aiormq.exceptions import ChannelNotFoundEntity
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from common.blobs import BlobStore
from common.consumer import BatchConsumer
from common.db import apply_migrations, create_pool
from common.envelope import utcnow
from common.ids import new_id
from common.observability import configure_logging
from common.outbox import COMMON_MIGRATIONS, OutboxRelay
from common.service import load_settings, service_metrics
from common.topology import MODEL_SERVING, Topology
from model_serving_service import metrics
from model_serving_service.adapters.triton import (
    ModelLoadError,
    TritonControl,
    TritonInference,
    TritonUnavailableError,
)
from model_serving_service.repository import Repository
from model_serving_service.repository.holds import ModelHolds
from model_serving_service.repository.models import Model
from model_serving_service.repository.services import Service
from model_serving_service.settings import Settings
from model_serving_service.worker.intake import Intake
from model_serving_service.worker.pipeline import ModelState, Pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS = Path(__file__).parents[1] / "migrations"
EXIT_OK = 0
EXIT_LOAD_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
"""The broker or the database stayed unreachable for ``worker_start_wait_seconds``."""
EXIT_CRASHED = 4
"""A background step (the model load, the heartbeat) failed in a way nobody expected."""

UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)
"""What a dependency that does not answer (yet) raises: connection refused or reset,
timeouts, a broker or database starting up or shutting down, a database connection
closed under a transaction (asyncpg's InterfaceError)."""


@dataclass(frozen=True, slots=True)
class Outage:
    """Something the replica needs stopped answering at ``since`` (monotonic)."""

    since: float


class WorkerStartError(Exception):
    """The worker cannot start (unknown service, queue missing ...)."""


class Worker:
    """One replica of one model service (see the package docstring)."""

    def __init__(self, settings: Settings, service_id: str, replica_id: str | None = None) -> None:
        self.settings = settings
        self.service_id = service_id
        self.replica_id = replica_id or new_id("rep")
        self.topology = Topology(
            settings.topology_prefix, settings.delivery_limit, tuple(settings.retry_delays)
        )
        self.exit_code = EXIT_OK
        self.state = ModelState()
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: BatchConsumer | None = None
        self._holding = False
        self.started_at = utcnow()
        self.model_ready_seconds: float | None = None

    async def start(self) -> None:
        """Connect, record the replica, start loading the model and consuming."""
        try:
            await self._start()
        except BaseException:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            await self._stack.aclose()
            raise

    async def start_when_reachable(self) -> bool:
        """:meth:`start`, tried again with backoff while the broker or the database does
        not answer, for up to ``worker_start_wait_seconds`` (one warning per outage, no
        traceback per try). False when they stayed away or a stop was requested."""
        deadline = time.monotonic() + self.settings.worker_start_wait_seconds
        delay = 0.25
        outage: Outage | None = None
        while True:
            try:
                await self.start()
            except UNREACHABLE as exc:
                if outage is None:
                    outage = Outage(time.monotonic())
                    log.warning(
                        "broker or database unreachable at start-up; trying again",
                        extra={
                            "error": f"{type(exc).__name__}: {exc}",
                            "wait_seconds": self.settings.worker_start_wait_seconds,
                        },
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    log.error(
                        "worker gives up: broker or database still unreachable",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                    return False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, remaining)):
                        await self._stop.wait()
                delay = min(delay * 2, 5.0)
                continue
            if outage is not None:
                log.info(
                    "broker and database answer; worker started",
                    extra={"waited_seconds": round(time.monotonic() - outage.since, 3)},
                )
            return True

    async def _start(self) -> None:
        s = self.settings
        pool = await create_pool(s.dsn, s.db_schema, min_size=1, max_size=4)
        self._stack.push_async_callback(pool.close)
        await apply_migrations(pool, s.db_schema, COMMON_MIGRATIONS, MIGRATIONS)
        self.repo = Repository(pool, self.topology)
        self.service, self.model = await self._service_and_model()
        self.concurrency = self.service.scaling.concurrency
        self.batch_size = max(1, min(self.model.spec.max_batch_size, self.concurrency))
        blobs = BlobStore(
            s.s3_endpoint_url,
            s.s3_bucket,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret_key,
            region=s.s3_region,
            max_connections=self.concurrency,
        )
        self._stack.push_async_callback(blobs.close)
        control = TritonControl(s.triton_http_url, load_timeout=s.load_timeout_seconds)
        self._stack.push_async_callback(control.close)
        inference = TritonInference(s.triton_grpc_url)
        self._stack.push_async_callback(inference.close)
        self.holds = ModelHolds(pool, control, stale_seconds=s.hold_stale_seconds)
        pipeline = Pipeline(
            settings=s,
            model=self.model,
            blobs=blobs,
            inference=inference,
            holds=self.holds,
            state=self.state,
        )
        intake = Intake(
            service_id=self.service_id,
            replica_id=self.replica_id,
            model=self.model,
            repo=self.repo,
            pipeline=pipeline,
            delivery_limit=s.delivery_limit,
            retries_allowed=len(self.topology.retry_delays),
        )
        consumer = await self._consumer_of(intake)
        relay = OutboxRelay(pool, s.amqp, poll_seconds=s.outbox_poll_seconds)
        await relay.start()
        self.relay = relay
        self._stack.push_async_callback(relay.stop)

        await self.repo.insert_replica(
            replica_id=self.replica_id,
            service=self.service,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
        )
        log.info(
            "replica starting",
            extra={
                "service_id": self.service_id,
                "replica_id": self.replica_id,
                "model": self.model.triton_name,
                "concurrency": self.concurrency,
                "batch_size": self.batch_size,
            },
        )
        for step, name in ((self._load(), "load-model"), (self._heartbeat_loop(), "heartbeat")):
            task = asyncio.create_task(step, name=name)
            task.add_done_callback(self._on_task_done)
            self._tasks.append(task)
        await consumer.start()
        self._consumer = consumer

    async def _service_and_model(self) -> tuple[Service, Model]:
        service = await self.repo.get_service(self.service_id)
        # An undeploying service still gets replicas: they serve its queue until it is empty.
        if service is None:
            raise WorkerStartError(f"model service {self.service_id} does not exist (any more)")
        model = await self.repo.get_model(service.model_id)
        if model is None:
            raise WorkerStartError(f"model {service.model_id} of {self.service_id} is gone")
        return service, model

    async def _consumer_of(self, intake: Intake) -> BatchConsumer:
        """The batch consumer of the service's work queue (declared by the service)."""
        queue = self.topology.predict_queue(self.service_id)
        broker = RabbitBroker(self.settings.amqp, publisher_confirms=True, logger=None)
        await broker.connect()
        self._stack.push_async_callback(broker.stop)
        await broker.declare_exchange(
            RabbitExchange(
                self.topology.dead_letter_exchange(MODEL_SERVING),
                type=ExchangeType.DIRECT,
                durable=True,
            )
        )
        consumer = BatchConsumer(
            amqp_url=self.settings.amqp,
            broker=broker,
            topology=self.topology,
            consumer=MODEL_SERVING,
            handler_name="predict",
            queue=RabbitQueue(queue),
            exchange=None,
            delivery_handler=intake.handle,
            metrics=service_metrics("model-serving"),
            prefetch=self.concurrency,
            max_batch=self.batch_size,
            writers=self.concurrency,
            linger=self.settings.batch_delay_ms / 1000.0,
            linger_when_idle=False,
            ordered=False,
            connect_timeout=30,
        )
        self._stack.push_async_callback(consumer.stop)
        try:
            await consumer.declare()
        except ChannelNotFoundEntity as exc:
            raise WorkerStartError(f"work queue {queue} does not exist") from exc
        return consumer

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """A background step that failed unexpectedly stops the replica with an error (its
        deliveries go back to the queue, the router replaces it) instead of leaving it
        alive, holding requests it will never serve."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error(
            "replica step failed; stopping the replica",
            exc_info=exc,
            extra={"step": task.get_name(), "replica_id": self.replica_id},
        )
        self.state.error = f"{task.get_name()}: {type(exc).__name__}: {exc}"
        self.state.loaded.set()
        self.request_stop(EXIT_CRASHED)

    @property
    def held(self) -> int:
        """Requests received and not yet settled."""
        return self._consumer.held if self._consumer is not None else 0

    def request_stop(self, exit_code: int | None = None) -> None:
        """Begin draining (SIGTERM)."""
        if exit_code is not None and self.exit_code == EXIT_OK:
            self.exit_code = exit_code
        self._stop.set()

    async def wait_stopping(self) -> None:
        """Return once a stop was requested."""
        await self._stop.wait()

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and the replica announced."""
        return self.state.loaded.is_set() and self.state.error is None

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the model load to finish (raises if it failed)."""
        async with asyncio.timeout(timeout):
            await self.state.loaded.wait()
        if self.state.error is not None:
            raise ModelLoadError(self.state.error)

    async def run(self) -> int:
        """Start, serve until a stop is requested, drain; return the exit code."""
        try:
            started = await self.start_when_reachable()
        except WorkerStartError as exc:
            log.error("worker cannot start", extra={"reason": str(exc)})
            return EXIT_CONFIG
        if not started:
            return EXIT_OK if self._stop.is_set() else EXIT_UNAVAILABLE
        await self._stop.wait()
        await self.stop()
        return self.exit_code

    async def stop(self) -> None:
        """Drain and shut down (see the package docstring)."""
        self._stop.set()
        # 1-3. No new deliveries; finish what is held within the drain budget; whatever
        # is still held then goes back to the queue for another replica.
        if self._consumer is not None:
            requeued = await self._consumer.stop(drain=self.service.scaling.drain_seconds)
            if requeued:
                metrics.PREDICTIONS.labels("requeued").inc(requeued)
                log.info("requeued held requests", extra={"count": requeued})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 4. Release the model; emit replica.stopped.v1 and make sure it is published.
        event_id: str | None = None
        # Also a hold whose load still waits for Triton (recorded, not yet loaded).
        with contextlib.suppress(Exception):
            await self.holds.release(self.replica_id)
        self._holding = False
        with contextlib.suppress(Exception):
            event_id = await self.repo.replica_stopped(
                self.replica_id,
                state="failed" if self.state.error else "stopped",
                error=self.state.error,
            )
        await self._flush_outbox([event_id] if event_id else [])
        log.info("replica stopped", extra={"replica_id": self.replica_id})
        await self._stack.aclose()

    async def _flush_outbox(self, event_ids: Sequence[str]) -> None:
        """Publish our last events before the relay goes away."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                if not await self.repo.outbox_pending(event_ids):
                    return
                await self.relay.relay_once()
            except Exception:
                log.warning("outbox flush failed; retrying", exc_info=True)
            await asyncio.sleep(0.05)
        log.warning("events left in the outbox at exit (the service's relay will publish them)")

    async def _until_reachable(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step``, trying again with backoff while Triton or the database does not
        answer (for as long as the replica lives): an outage, not a model that cannot
        load; the replica recovers by itself when they are back. One warning per outage."""
        delay = self.settings.load_retry_backoff_seconds
        outage: Outage | None = None
        while True:
            try:
                result = await step()
            except (TritonUnavailableError, *UNREACHABLE) as exc:
                if outage is None:
                    outage = Outage(time.monotonic())
                    log.warning(
                        f"{what}: Triton or the database is unreachable; trying again",
                        extra={"model": self.model.triton_name, "error": str(exc)},
                    )
                self.state.waiting = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.load_retry_max_backoff_seconds)
                continue
            self.state.waiting = None
            if outage is not None:
                log.info(
                    f"{what}: done after an outage",
                    extra={"outage_seconds": round(time.monotonic() - outage.since, 3)},
                )
            return result

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            await self._until_reachable(
                "loading the model",
                lambda: self.holds.acquire(self.replica_id, self.model.triton_name, "replica"),
            )
        except ModelLoadError as exc:
            reason = str(exc)
            self.state.error = reason
            log.error(
                "model load failed", extra={"model": self.model.triton_name, "reason": reason}
            )
            await self._until_reachable(
                "recording the failed load",
                lambda: self.repo.set_status(
                    self.service_id, "failed", reason, allowed_from=("deploying", "ready")
                ),
            )
            self.state.loaded.set()
            self.request_stop(EXIT_LOAD_FAILED)
            return
        self._holding = True
        self.model_ready_seconds = time.monotonic() - started
        metrics.MODEL_LOAD_SECONDS.observe(self.model_ready_seconds)
        await self._until_reachable(
            "announcing the replica", lambda: self.repo.replica_running(self.replica_id)
        )
        await self._until_reachable(
            "recording the service ready",
            lambda: self.repo.set_status(
                self.service_id, "ready", None, allowed_from=("deploying", "failed")
            ),
        )
        log.info(
            "model ready",
            extra={"model": self.model.triton_name, "seconds": round(self.model_ready_seconds, 3)},
        )
        self.state.loaded.set()

    async def _heartbeat_loop(self) -> None:
        """Every ``hold_heartbeat_seconds``: the replica is alive, and so is its hold on
        the model (also while the load is still running or waiting for Triton). One
        warning per database outage, not a traceback per beat."""
        outage: Outage | None = None
        while True:
            await asyncio.sleep(self.settings.hold_heartbeat_seconds)
            try:
                revived = await self.repo.replica_seen(self.replica_id)
                await self.holds.heartbeat(self.replica_id)
            except Exception as exc:
                if outage is None:
                    outage = Outage(time.monotonic())
                    log.warning(
                        "heartbeat failed; trying again every beat",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                continue
            if outage is not None:
                log.info(
                    "heartbeat works again",
                    extra={"outage_seconds": round(time.monotonic() - outage.since, 3)},
                )
                outage = None
            if revived:
                log.warning(
                    "replica had been marked lost while its heartbeats failed; alive again",
                    extra={"replica_id": self.replica_id},
                )


async def _serve(settings: Settings) -> int:
    assert settings.worker_service_id is not None
    worker = Worker(settings, settings.worker_service_id, settings.worker_replica_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.http_host)
    return await worker.run()


def main() -> int:
    """Entry point of ``python -m model_serving_service.worker``."""
    settings = load_settings(Settings)
    configure_logging("model-serving-worker", settings.log_level)
    if not settings.worker_service_id:
        sys.stderr.write("MODEL_SERVING_WORKER_SERVICE_ID is required for a worker\n")
        return EXIT_CONFIG
    return asyncio.run(_serve(settings))
