"""Predict worker: one replica of one model service.

``python -m model_serving_service.worker`` with the service's ``MODEL_SERVING_*``
settings plus ``MODEL_SERVING_WORKER_SERVICE_ID`` (and ``..._WORKER_REPLICA_ID``).

Lifecycle:

1. Read the service and its model from model-serving's tables; record the replica.
2. Hold the model on Triton (loading it when no other replica holds it) while already
   consuming ``predict.<service_id>`` with prefetch = the service's concurrency: requests
   that arrive during a cold start wait for the load, within their timeout.
3. Emit ``replica.started.v1`` once the model is loaded.
4. Micro-batch: take up to the model's batch size within ``batch_delay_ms``, fetch the
   blobs from S3 concurrently, check each item against the model's input type, call
   Triton over async gRPC once per batch, turn outputs into annotations.
5. Record one outcome per request (``prediction.completed.v1`` or
   ``prediction.failed.v1``) in the outbox, claiming the request key in the same
   transaction (a duplicate request gets no second outcome), and ack after the commit;
   the outbox relay publishes with confirms.
6. On SIGTERM: stop consuming, finish what is held (requeue what is left after the
   service's ``drain_seconds``), release the model (unloaded if this was the last
   holder), emit ``replica.stopped.v1``, exit 0.

Failures: Triton unreachable -> retried with backoff, then the message is requeued; on
its last delivery (``x-delivery-count`` reached the delivery limit) it gets a
``prediction.failed.v1`` (retryable) and goes to the dead-letter queue: never an ack
without an outcome. Wrong type / undecodable / missing blob -> failed at once.
Timeout (the model's ``timeout_seconds`` from receipt, model load included) -> failed
with "timeout". The model fails to load -> the service becomes ``failed`` with
Triton's reason and the worker exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from common.blobs import BlobMissingError, BlobStore
from common.contracts import (
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
    PredictionFailed,
    PredictRequest,
)
from common.db import apply_migrations, create_pool
from common.envelope import CloudEvent, make_event, utcnow
from common.ids import new_id
from common.messaging import COMMON_MIGRATIONS, OutboxRelay, PoisonMessageError, parse_event
from common.observability import configure_logging
from common.service import load_settings
from common.topology import DEAD_LETTER_REASON_HEADER, MODEL_SERVING, Topology
from model_serving_service import metrics
from model_serving_service.adapters.triton import (
    InferenceError,
    ModelHolds,
    ModelLoadError,
    ModelNotLoadedError,
    TritonControl,
    TritonInference,
    TritonTimeoutError,
    TritonUnavailableError,
)
from model_serving_service.domain.requests import (
    backoff_delays,
    execution_key,
    is_last_delivery,
    outcome_event_id,
)
from model_serving_service.domain.specs import input_problem
from model_serving_service.predictor import BadInputError, Prepared, predict_batch, prepare_many
from model_serving_service.repository import SOURCE, Model, Outcome, Repository, Service
from model_serving_service.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
EXIT_OK = 0
EXIT_LOAD_FAILED = 1
EXIT_CONFIG = 2


class WorkerStartError(Exception):
    """The worker cannot start (unknown service, queue missing ...)."""


@dataclass(eq=False)
class Pending:
    """One delivered predict request, from receipt to settlement."""

    message: AbstractIncomingMessage
    received: float
    started_at: datetime
    deadline: float
    event: CloudEvent[PredictRequest] | None = None
    key: str = ""
    prepared: Prepared | None = None
    settled: bool = False

    @property
    def request(self) -> PredictRequest:
        """The parsed request."""
        assert self.event is not None
        return self.event.data


@dataclass
class BatchResult:
    """What happened to the requests of one batch."""

    completed: list[tuple[Pending, list[PredictedAnnotation]]] = field(default_factory=list)
    failed: list[tuple[Pending, str, bool, bool]] = field(default_factory=list)
    """(request, reason, retryable, also dead-letter it)."""
    transient: list[tuple[Pending, str]] = field(default_factory=list)
    """Not decided: requeue (or, on the last delivery, fail and dead-letter)."""


class Worker:
    """One replica of one model service (see the module docstring)."""

    def __init__(self, settings: Settings, service_id: str, replica_id: str | None = None) -> None:
        self.settings = settings
        self.service_id = service_id
        self.replica_id = replica_id or new_id("rep")
        self.topology = Topology(settings.topology_prefix, settings.delivery_limit)
        self.exit_code = EXIT_OK
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._load_error: str | None = None
        self._incoming: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._unsettled: set[Pending] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._batcher: asyncio.Task[None] | None = None
        self._holding = False
        self._consumer_tag: str | None = None
        self._queue: AbstractQueue | None = None
        self._dlx: AbstractExchange | None = None
        self.started_at = utcnow()
        self.model_ready_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, record the replica, start loading the model and consuming."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        s = self.settings
        pool = await create_pool(s.dsn, s.db_schema, min_size=1, max_size=4)
        self._stack.push_async_callback(pool.close)
        await apply_migrations(pool, s.db_schema, COMMON_MIGRATIONS, MIGRATIONS)
        self.repo = Repository(pool, self.topology)
        service = await self.repo.get_service(self.service_id)
        # An undeploying service still gets replicas: they serve its queue until it is empty.
        if service is None:
            raise WorkerStartError(f"model service {self.service_id} does not exist (any more)")
        model = await self.repo.get_model(service.model_id)
        if model is None:
            raise WorkerStartError(f"model {service.model_id} of {self.service_id} is gone")
        self.service: Service = service
        self.model: Model = model
        self.spec = model.spec
        self.concurrency = service.scaling.concurrency
        self.batch_size = max(1, min(self.spec.max_batch_size, self.concurrency))

        connection = await aio_pika.connect_robust(s.amqp, timeout=30)
        self._stack.push_async_callback(connection.close)
        consume: AbstractChannel = await connection.channel()
        await consume.set_qos(prefetch_count=self.concurrency)
        publish = await connection.channel(publisher_confirms=True)
        self._dlx = await publish.declare_exchange(
            self.topology.dead_letter_exchange(MODEL_SERVING),
            aio_pika.ExchangeType.DIRECT,
            durable=True,
        )
        try:
            self._queue = await consume.declare_queue(
                self.topology.predict_queue(self.service_id), passive=True
            )
        except ChannelNotFoundEntity as exc:
            raise WorkerStartError(
                f"work queue {self.topology.predict_queue(self.service_id)} does not exist"
            ) from exc

        relay = OutboxRelay(pool, s.amqp, poll_seconds=s.outbox_poll_seconds)
        await relay.start()
        self.relay = relay
        self._stack.push_async_callback(relay.stop)
        self.blobs = BlobStore(
            s.s3_endpoint_url,
            s.s3_bucket,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret_key,
            region=s.s3_region,
            max_connections=self.concurrency,
        )
        self._stack.push_async_callback(self.blobs.close)
        self.max_pixels = 89_478_485
        control = TritonControl(s.triton_http_url, load_timeout=s.load_timeout_seconds)
        self._stack.push_async_callback(control.close)
        self.inference = TritonInference(s.triton_grpc_url)
        self._stack.push_async_callback(self.inference.close)
        self.holds = ModelHolds(pool, control, stale_seconds=s.hold_stale_seconds)

        await self.repo.insert_replica(
            replica_id=self.replica_id,
            service=service,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
        )
        log.info(
            "replica starting",
            extra={
                "service_id": self.service_id,
                "replica_id": self.replica_id,
                "model": model.triton_name,
                "concurrency": self.concurrency,
                "batch_size": self.batch_size,
            },
        )
        self._tasks.append(asyncio.create_task(self._load(), name="load-model"))
        self._batcher = asyncio.create_task(self._batch_loop(), name="batcher")
        self._tasks.append(self._batcher)
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        self._consumer_tag = await self._queue.consume(self._on_message)

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
        return self._ready.is_set() and self._load_error is None

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the model load to finish (raises if it failed)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        if self._load_error is not None:
            raise ModelLoadError(self._load_error)

    async def run(self) -> int:
        """Start, serve until a stop is requested, drain; return the exit code."""
        try:
            await self.start()
        except WorkerStartError as exc:
            log.error("worker cannot start", extra={"reason": str(exc)})
            return EXIT_CONFIG
        await self._stop.wait()
        await self.stop()
        return self.exit_code

    async def stop(self) -> None:
        """Drain and shut down (see the module docstring)."""
        self._stop.set()
        drain = self.service.scaling.drain_seconds
        # 1. No new deliveries.
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        await self._incoming.put(None)  # the batcher dispatches what it has, then ends
        # 2. Finish what is held, within the drain budget.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                if self._batcher is not None:
                    await asyncio.wait([self._batcher])
                while self._inflight:
                    await asyncio.gather(*list(self._inflight), return_exceptions=True)
        for task in list(self._inflight) + self._tasks:
            task.cancel()
        await asyncio.gather(*self._inflight, *self._tasks, return_exceptions=True)
        # 3. Whatever is still held goes back to the queue for another replica.
        while not self._incoming.empty():
            pending = self._incoming.get_nowait()
            if pending is not None:
                self._unsettled.add(pending)
        requeued = 0
        for pending in list(self._unsettled):
            requeued += await self._nack(pending)
        if requeued:
            log.info("requeued held requests", extra={"count": requeued})
        # 4. Release the model; emit replica.stopped.v1 and make sure it is published.
        event_id: str | None = None
        if self._holding:
            with contextlib.suppress(Exception):
                await self.holds.release(self.replica_id)
            self._holding = False
        with contextlib.suppress(Exception):
            event_id = await self.repo.replica_stopped(
                self.replica_id,
                state="failed" if self._load_error else "stopped",
                error=self._load_error,
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

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            await self.holds.acquire(self.replica_id, self.model.triton_name, "replica")
        except ModelLoadError as exc:
            reason = str(exc)
            self._load_error = reason
            log.error(
                "model load failed", extra={"model": self.model.triton_name, "reason": reason}
            )
            await self.repo.set_status(
                self.service_id, "failed", reason, allowed_from=("deploying", "ready")
            )
            self._ready.set()
            self.request_stop(EXIT_LOAD_FAILED)
            return
        self._holding = True
        self.model_ready_seconds = time.monotonic() - started
        metrics.MODEL_LOAD_SECONDS.observe(self.model_ready_seconds)
        await self.repo.replica_running(self.replica_id)
        await self.repo.set_status(
            self.service_id, "ready", None, allowed_from=("deploying", "failed")
        )
        log.info(
            "model ready",
            extra={"model": self.model.triton_name, "seconds": round(self.model_ready_seconds, 3)},
        )
        self._ready.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.hold_heartbeat_seconds)
            try:
                await self.repo.replica_seen(self.replica_id)
                if self._holding:
                    await self.holds.heartbeat(self.replica_id)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)

    # ------------------------------------------------------------------ consuming

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        now = time.monotonic()
        pending = Pending(
            message=message,
            received=now,
            started_at=utcnow(),
            deadline=now + self.spec.timeout_seconds,
        )
        self._unsettled.add(pending)
        await self._incoming.put(pending)

    async def _batch_loop(self) -> None:
        delay = self.settings.batch_delay_ms / 1000.0
        while True:
            first = await self._incoming.get()
            if first is None:
                return
            batch = [first]
            ended = False
            deadline = time.monotonic() + delay
            while len(batch) < self.batch_size:
                if not self._incoming.empty():
                    item = self._incoming.get_nowait()
                elif len(self._unsettled) >= self.concurrency or self._stop.is_set():
                    break  # every prefetch slot is in hand: nothing more can arrive
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            item = await self._incoming.get()
                    except TimeoutError:
                        break
                if item is None:
                    ended = True
                    break
                batch.append(item)
            task = asyncio.create_task(self._process(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if ended:
                return

    # ------------------------------------------------------------------ settling

    async def _ack(self, pending: Pending) -> None:
        if pending.settled:
            return
        pending.settled = True
        self._unsettled.discard(pending)
        try:
            await pending.message.ack()
        except Exception:
            # The channel died: the broker redelivers, and the claim stops a second outcome.
            log.warning("ack failed", exc_info=True)

    async def _nack(self, pending: Pending) -> int:
        if pending.settled:
            return 0
        pending.settled = True
        self._unsettled.discard(pending)
        try:
            await pending.message.nack(requeue=True)
        except Exception:
            log.warning("nack failed", exc_info=True)
        metrics.PREDICTIONS.labels("requeued").inc()
        return 1

    async def _dead_letter(self, pending: Pending, reason: str) -> None:
        """Publish a copy to the dead-letter queue with the reason (confirmed)."""
        assert self._dlx is not None
        queue = self.topology.predict_queue(self.service_id)
        message = pending.message
        await self._dlx.publish(
            aio_pika.Message(
                message.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                headers={**(message.headers or {}), DEAD_LETTER_REASON_HEADER: reason[:1000]},
            ),
            routing_key=self.topology.dead_letter_queue(queue),
        )
        metrics.PREDICTIONS.labels("dead_lettered").inc()

    # ------------------------------------------------------------------ processing

    async def _process(self, batch: list[Pending]) -> None:
        try:
            await self._process_batch(batch)
        except asyncio.CancelledError:
            for pending in batch:
                await asyncio.shield(self._nack(pending))
            raise
        except Exception:
            log.exception("batch failed; requeueing its requests")
            for pending in batch:
                await self._nack(pending)

    async def _process_batch(self, batch: list[Pending]) -> None:
        live: list[Pending] = []
        for pending in batch:
            try:
                event = parse_event(pending.message.body, PredictRequest)
            except PoisonMessageError as exc:
                await self._dead_letter(pending, str(exc))
                await self._ack(pending)
                continue
            if event.data.service_id != self.service_id:
                await self._dead_letter(
                    pending,
                    f"request for service {event.data.service_id} reached the queue of "
                    f"{self.service_id}",
                )
                await self._ack(pending)
                continue
            pending.event = event
            pending.key = execution_key(event.data.execution_id, event.data.attempt)
            live.append(pending)
        if not live:
            return
        done = await self.repo.claimed([p.key for p in live])
        for pending in [p for p in live if p.key in done]:
            metrics.PREDICTIONS.labels("duplicate").inc()
            await self._ack(pending)
        live = [p for p in live if p.key not in done]
        if not live:
            return

        result = BatchResult()
        fetched = await asyncio.gather(*(self._fetch(p) for p in live), return_exceptions=True)
        blobs: list[tuple[Pending, bytes]] = []
        for pending, got in zip(live, fetched, strict=True):
            if isinstance(got, BadInputError):
                result.failed.append((pending, got.reason, False, got.poison))
            elif isinstance(got, BlobMissingError):
                item = pending.request.item
                result.failed.append(
                    (pending, f"the blob of item {item.id} is not in the bucket", False, False)
                )
            elif isinstance(got, BaseException):
                result.transient.append((pending, f"cannot read the item's blob: {got}"))
            else:
                blobs.append((pending, got))
        # Decoding a batch is one hop to a thread, not one per item.
        prepared = await asyncio.to_thread(
            prepare_many,
            self.spec,
            [(data, self._mimetype(p)) for p, data in blobs],
            self.max_pixels,
        )
        ready: list[Pending] = []
        for (pending, _), got_prepared in zip(blobs, prepared, strict=True):
            if isinstance(got_prepared, BadInputError):
                result.failed.append((pending, got_prepared.reason, False, got_prepared.poison))
            else:
                pending.prepared = got_prepared
                ready.append(pending)
        if ready:
            await self._predict(ready, result)
        await self._settle(result)

    @staticmethod
    def _mimetype(pending: Pending) -> str | None:
        system = pending.request.item.metadata.get("system") or {}
        mimetype = system.get("mimetype")
        return str(mimetype) if mimetype else None

    async def _fetch(self, pending: Pending) -> bytes:
        """The item's bytes, after the checks that need no bytes (type, size)."""
        system: dict[str, Any] = dict(pending.request.item.metadata.get("system") or {})
        key = system.get("blob_key")
        if not key:
            raise BadInputError("item has no blob (metadata.system.blob_key is missing)")
        problem = input_problem(self.spec.input_type, self._mimetype(pending))
        if problem is not None:
            raise BadInputError(problem)
        size = system.get("size")
        if isinstance(size, int) and size > self.settings.max_image_bytes:
            raise BadInputError(
                f"item is {size} bytes; the model accepts at most {self.settings.max_image_bytes}"
            )
        return await self.blobs.get(str(key))

    async def _predict(self, items: list[Pending], result: BatchResult) -> None:
        remaining = min(p.deadline for p in items) - time.monotonic()
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await self._ready.wait()
            except TimeoutError:
                reason = (
                    f"timeout: model {self.model.name} was not loaded within the model's "
                    f"{self.spec.timeout_seconds:g}s timeout"
                )
                result.failed.extend((p, reason, True, False) for p in items)
                return
        if self._load_error is not None:
            reason = f"model {self.model.name} could not be loaded: {self._load_error}"
            result.failed.extend((p, reason, True, False) for p in items)
            return
        await self._infer(items, result)

    async def _infer(self, items: list[Pending], result: BatchResult) -> None:
        delays = backoff_delays(
            self.settings.triton_retry_attempts, self.settings.triton_retry_backoff_seconds
        )
        attempt = 0
        reloaded = False
        while True:
            remaining = min(p.deadline for p in items) - time.monotonic()
            if remaining <= 0:
                reason = f"timeout: no prediction within the model's {self.spec.timeout_seconds:g}s"
                result.failed.extend((p, reason, True, False) for p in items)
                return
            started = time.monotonic()
            try:
                annotations = await predict_batch(
                    self.spec,
                    self.model.triton_name,
                    self.inference,
                    [p.prepared for p in items if p.prepared is not None],
                    timeout=remaining,
                )
            except TritonTimeoutError:
                reason = (
                    f"timeout: Triton did not answer within the model's "
                    f"{self.spec.timeout_seconds:g}s timeout"
                )
                result.failed.extend((p, reason, True, False) for p in items)
                return
            except ModelNotLoadedError as exc:
                if reloaded:
                    result.transient.extend(
                        (p, f"model not loaded on Triton: {exc}") for p in items
                    )
                    return
                reloaded = True
                try:
                    await self.holds.ensure_loaded(self.model.triton_name)
                except (ModelLoadError, TritonUnavailableError) as load_exc:
                    result.transient.extend((p, f"model not loaded: {load_exc}") for p in items)
                    return
                continue
            except TritonUnavailableError as exc:
                if attempt < len(delays):
                    metrics.TRITON_RETRIES.inc()
                    await asyncio.sleep(delays[attempt])
                    attempt += 1
                    continue
                reason = f"Triton is unreachable at {self.settings.triton_grpc_url}: {exc}"
                result.transient.extend((p, reason) for p in items)
                return
            except InferenceError as exc:
                if len(items) > 1:
                    # One bad item must not fail its batch-mates: split and retry.
                    middle = len(items) // 2
                    await self._infer(items[:middle], result)
                    await self._infer(items[middle:], result)
                    return
                result.failed.append((items[0], f"model error: {exc}", False, False))
                return
            metrics.TRITON_SECONDS.observe(time.monotonic() - started)
            metrics.BATCH_SIZE.observe(len(items))
            result.completed.extend(zip(items, annotations, strict=True))
            return

    def _completed(
        self, pending: Pending, annotations: list[PredictedAnnotation]
    ) -> CloudEvent[Any]:
        request = pending.request
        data = PredictionCompleted(
            execution_id=request.execution_id,
            service_id=self.service_id,
            project_id=request.project_id,
            dataset_id=request.item.dataset_id,
            item_id=request.item.id,
            replica_id=self.replica_id,
            model=ModelRef(
                name=self.model.name, model_id=self.model.id, version=self.model.version
            ),
            annotations=annotations,
            started_at=pending.started_at,
            finished_at=utcnow(),
        )
        return make_event(
            data,
            source=SOURCE,
            subject=request.item.id,
            correlationid=request.execution_id,
            event_id=outcome_event_id(pending.key),
        )

    def _failed(self, pending: Pending, reason: str, retryable: bool) -> CloudEvent[Any]:
        request = pending.request
        data = PredictionFailed(
            execution_id=request.execution_id,
            service_id=self.service_id,
            project_id=request.project_id,
            item_id=request.item.id,
            replica_id=self.replica_id,
            reason=reason[:2000],
            retryable=retryable,
        )
        return make_event(
            data,
            source=SOURCE,
            subject=request.item.id,
            correlationid=request.execution_id,
            event_id=outcome_event_id(pending.key),
        )

    async def _settle(self, result: BatchResult) -> None:
        outcomes: list[Outcome] = []
        decided: list[Pending] = []
        dead: list[tuple[Pending, str]] = []
        requeue: list[tuple[Pending, str]] = []
        for pending, found in result.completed:
            outcomes.append(Outcome(pending.key, self._completed(pending, found)))
            decided.append(pending)
        for pending, reason, retryable, poison in result.failed:
            outcomes.append(Outcome(pending.key, self._failed(pending, reason, retryable)))
            decided.append(pending)
            if poison:
                dead.append((pending, reason))
        for pending, reason in result.transient:
            headers = pending.message.headers or {}
            count = headers.get("x-delivery-count")
            if is_last_delivery(
                count if isinstance(count, int) else None, self.settings.delivery_limit
            ):
                final = f"{reason} (gave up after {self.settings.delivery_limit + 1} deliveries)"
                outcomes.append(Outcome(pending.key, self._failed(pending, final, True)))
                decided.append(pending)
                dead.append((pending, final))
            else:
                requeue.append((pending, reason))
        recorded = await self.repo.record_outcomes(outcomes)
        for pending, _ in result.completed:
            metrics.PREDICTIONS.labels(
                "completed" if pending.key in recorded else "duplicate"
            ).inc()
        for pending, *_ in result.failed:
            metrics.PREDICTIONS.labels("failed" if pending.key in recorded else "duplicate").inc()
        # The outcomes are committed: only now may the requests leave the queue.
        for pending, reason in dead:
            await self._dead_letter(pending, reason)
        now = time.monotonic()
        for pending in decided:
            metrics.REQUEST_SECONDS.observe(now - pending.received)
            await self._ack(pending)
        for pending, reason in requeue:
            log.warning("requeueing request", extra={"key": pending.key, "reason": reason})
            await self._nack(pending)


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


if __name__ == "__main__":
    sys.exit(main())
