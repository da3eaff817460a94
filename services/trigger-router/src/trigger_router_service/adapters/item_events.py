"""The item-event consumer: routes micro-batches of item events in one transaction each.

Item events are the router's hot path (every upload, every metadata change), so this
consumer uses aio-pika directly instead of a FastStream subscriber: it takes whatever
the broker delivered (up to ``batch`` events, prefetch ``prefetch``), routes them in one
database transaction (claims, executions, predict requests in the outbox, wake-ups),
then acks them. A failing batch is retried event by event, so one bad event cannot
hold the others back; an event that keeps failing is requeued until the queue's
delivery limit dead-letters it. Poison (bad JSON, unknown version, missing fields) is
dead-lettered at once with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from faststream.rabbit import RabbitBroker

from common.contracts import ItemCreated, ItemDeleted, ItemMetadataUpdated, ItemUpdated
from common.dql import Condition
from common.messaging import PoisonMessageError, dead_letter, parse_event
from common.observability import ServiceMetrics, log_context
from common.topology import DATASET, TRIGGER_ROUTER, Topology
from trigger_router_service import metrics
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import ExecutionStatus
from trigger_router_service.domain.routing import ItemEvent, RouteOutcome, item_event
from trigger_router_service.domain.triggers import ACTION_BY_ROUTING_KEY, ActiveTrigger
from trigger_router_service.usecases.routing import ItemRouting

log = logging.getLogger(__name__)

HANDLER = "on_item_event"
ITEM_CONTRACTS = (ItemCreated, ItemUpdated, ItemMetadataUpdated, ItemDeleted)


def _count_mismatch(_trigger: ActiveTrigger, _cond: Condition, _value: Any) -> None:
    metrics.FILTER_MISMATCHES.inc()


class ItemEventConsumer:
    """Consumes ``trigger_router.on_item_event`` (bound to the four item event keys)."""

    def __init__(
        self,
        *,
        amqp_url: str,
        topology: Topology,
        routing: ItemRouting,
        broker: RabbitBroker,
        service_metrics: ServiceMetrics,
        prefetch: int = 256,
        batch: int = 128,
    ) -> None:
        self._url = amqp_url
        self._topology = topology
        self._routing = routing
        self._broker = broker
        self._metrics = service_metrics
        self._prefetch = prefetch
        self._batch = batch
        self.queue_name = topology.queue(TRIGGER_ROUTER, HANDLER)
        self._buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def declare(self, channel: aio_pika.abc.AbstractChannel) -> AbstractQueue:
        """Declare the quorum queue and bind it to the item event keys (idempotent)."""
        exchange = await channel.declare_exchange(
            self._topology.events_exchange(DATASET), aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments=self._topology.queue_arguments(TRIGGER_ROUTER, self.queue_name),
        )
        for key in ACTION_BY_ROUTING_KEY:
            await queue.bind(exchange, routing_key=key)
        return queue

    async def start(self) -> None:
        """Declare, bind and start consuming."""
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        assert isinstance(channel, aio_pika.RobustChannel)
        self._channel = channel
        await channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self.declare(channel)
        self._task = asyncio.create_task(self._work(), name="item-event-router")
        self._tag = await self._queue.consume(self._buffer.put)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming, finish what was delivered (bounded), then close (idempotent)."""
        queue, tag, self._queue, self._tag = self._queue, self._tag, None, None
        if queue is not None and tag is not None:
            # Bounded: on a connection that is down, a robust queue waits for it to return.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), timeout)
        deadline = time.monotonic() + timeout
        while (not self._buffer.empty() or not self._idle.is_set()) and (
            time.monotonic() < deadline
        ):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 0.05)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            # Whatever is still unacknowledged goes back to the queue.
            await connection.close()

    async def _work(self) -> None:
        while True:
            first = await self._buffer.get()
            self._idle.clear()
            batch = [first]
            while len(batch) < self._batch and not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
            try:
                await self.handle(batch)
            except Exception:
                log.exception("routing batch crashed; its events are requeued")
                for message in batch:
                    await _settle(message, requeue=True)
            finally:
                if self._buffer.empty():
                    self._idle.set()

    async def handle(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Parse, dead-letter poison, route the rest in one transaction, ack."""
        started = time.perf_counter()
        parsed: list[tuple[AbstractIncomingMessage, ItemEvent]] = []
        for message in messages:
            try:
                envelope = parse_event(message.body, *ITEM_CONTRACTS)
                parsed.append((message, item_event(envelope)))
            except (PoisonMessageError, RouterError) as exc:
                reason = exc.message if isinstance(exc, RouterError) else str(exc)
                await dead_letter(
                    self._broker,
                    self._topology,
                    TRIGGER_ROUTER,
                    self.queue_name,
                    message.body,
                    reason,
                )
                await _settle(message)
                self._metrics.messages.labels(HANDLER, "dead_lettered").inc()
        if parsed:
            try:
                outcome = await self._routing.route(
                    [e for _, e in parsed], on_mismatch=_count_mismatch
                )
            except Exception:
                if len(parsed) == 1:
                    raise
                log.warning("routing batch failed; retrying its events one by one", exc_info=True)
                for message, event in parsed:
                    await self._route_one(message, event)
            else:
                self._record(outcome, [e for _, e in parsed])
                await _ack_all([m for m, _ in parsed])
        self._metrics.handler_seconds.labels(HANDLER).observe(time.perf_counter() - started)

    async def _route_one(self, message: AbstractIncomingMessage, event: ItemEvent) -> None:
        with log_context(event.event_id):
            try:
                outcome = await self._routing.route([event], on_mismatch=_count_mismatch)
            except Exception:
                log.exception("routing an item event failed; requeued")
                self._metrics.messages.labels(HANDLER, "error").inc()
                await _settle(message, requeue=True)
                return
        self._record(outcome, [event])
        await _settle(message)

    def _record(self, outcome: RouteOutcome, events: Sequence[ItemEvent]) -> None:
        now = datetime.now(UTC)
        for event in events:
            if event.event_id in outcome.duplicates:
                result = "duplicate"
            else:
                result = "matched" if event.event_id in outcome.matched_events else "unmatched"
                metrics.ROUTING_LATENCY.observe(max((now - event.time).total_seconds(), 0.0))
            metrics.EVENTS_ROUTED.labels(event.action.value, result).inc()
            self._metrics.messages.labels(
                HANDLER, "duplicate" if result == "duplicate" else "ok"
            ).inc()
        for status, count in outcome.created.items():
            metrics.EXECUTIONS.labels(status.value).inc(count)
        queued = outcome.created.get(ExecutionStatus.QUEUED, 0)
        if queued:
            metrics.PREDICT_REQUESTS.labels("routed").inc(queued)
        if outcome.failed_triggers:
            metrics.TRIGGERS_FAILED.inc(len(outcome.failed_triggers))
            log.warning(
                "triggers failed: their model service is gone",
                extra={"trigger_ids": outcome.failed_triggers},
            )


async def _ack_all(messages: Sequence[AbstractIncomingMessage]) -> None:
    """Ack a routed batch with one ``basic.ack multiple`` on the highest delivery tag.

    Safe because batches are settled in delivery order: every earlier delivery of the
    channel is already acked or rejected. Messages from a channel that was since
    reconnected (different channel objects) are settled one by one instead.
    """
    channels = {id(_channel_of(m)) for m in messages}
    if len(messages) < 2 or len(channels) != 1 or None in {m.delivery_tag for m in messages}:
        for message in messages:
            await _settle(message)
        return
    last = max(messages, key=lambda m: m.delivery_tag or 0)
    try:
        await last.ack(multiple=True)
    except Exception as exc:  # the channel died: the broker redelivers, claims dedup
        log.debug("batch could not be acked: %s", exc)


def _channel_of(message: AbstractIncomingMessage) -> object | None:
    try:
        return message.channel
    except Exception:
        return None


async def _settle(message: AbstractIncomingMessage, *, requeue: bool | None = None) -> None:
    """Ack (``requeue=None``) or nack; a message from a channel that was since
    reconnected cannot be settled and will be redelivered anyway."""
    try:
        if requeue is None:
            await message.ack()
        else:
            await message.nack(requeue=requeue)
    except Exception as exc:  # aio-pika raises different errors per channel state
        log.debug("message could not be settled: %s", exc)
