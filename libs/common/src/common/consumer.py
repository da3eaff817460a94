"""Batch consumption of one hot queue with aio-pika.

FastStream hands a handler one message at a time and settles each on its own; its
per-message machinery (context scopes, middlewares, argument models, one ack per
message) costs more than storing a prediction's annotations does. A queue that
carries thousands of messages a second and whose handler stores them in batches
anyway is consumed here instead:

- deliveries (up to ``prefetch`` unacknowledged) are buffered as they arrive;
- ``writers`` tasks take up to ``max_batch`` of them at a time and hand their bodies
  to the handler, which answers one :data:`Outcome` per body;
- bodies the handler refuses go to the queue's dead-letter queue with the reason
  (confirmed), bodies to retry are rejected back onto the queue (the quorum queue's
  delivery limit bounds the retries), and the rest are acknowledged with one
  ``basic.ack(multiple)`` per batch.

Batches settle in the order they were taken, so a multiple ack never covers a
delivery of a batch still being handled. A message is acknowledged only after the
handler returned, i.e. after its effect committed: at-least-once holds, and the
handler must be idempotent. Messages buffered when the connection drops are
redelivered by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue

from common.messaging import dead_letter
from common.observability import ServiceMetrics
from common.topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    """The message was handled; ``label`` is its outcome in the metrics (ok, duplicate)."""

    label: str = "ok"


HANDLED = Handled()
DUPLICATE = Handled("duplicate")
"""Handled before: a redelivery that changed nothing."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message can never be handled: move it to the dead-letter queue."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Handling failed for a passing reason: put the message back on the queue."""

    reason: str


Outcome = Handled | DeadLetter | Retry
"""What became of one message."""

BatchHandler = Callable[[Sequence[bytes]], Awaitable[Sequence[Outcome]]]
"""Handles the bodies of a batch; returns one outcome per body, in order."""


class BatchConsumer:
    """Consumes ``queue`` (bound to ``exchange``) in batches; see the module docstring."""

    def __init__(
        self,
        *,
        amqp_url: str,
        broker: RabbitBroker,
        topology: Topology,
        consumer: str,
        handler_name: str,
        queue: RabbitQueue,
        exchange: RabbitExchange,
        handler: BatchHandler,
        metrics: ServiceMetrics,
        prefetch: int,
        max_batch: int,
        writers: int = 1,
    ) -> None:
        self._amqp_url = amqp_url
        self._broker = broker
        self._topology = topology
        self._consumer = consumer
        self._name = handler_name
        self._queue_spec = queue
        self._exchange_spec = exchange
        self._handler = handler
        self._metrics = metrics
        self._prefetch = prefetch
        self._max_batch = max_batch
        self._writers = writers
        self._buffer: list[AbstractIncomingMessage] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._taken = 0
        self._settled = 0
        self._settled_changed = asyncio.Condition()
        self.batches = 0
        """Batches handled so far."""

    @property
    def queue_name(self) -> str:
        """The queue consumed."""
        return self._queue_spec.name

    async def start(self) -> None:
        """Declare the queue and its binding, and start consuming."""
        self._taken = self._settled = 0
        self._connection = await aio_pika.connect_robust(self._amqp_url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        exchange = await channel.declare_exchange(
            self._exchange_spec.name,
            aio_pika.ExchangeType(self._exchange_spec.type.value),
            durable=True,
        )
        self._queue = await channel.declare_queue(
            self._queue_spec.name,
            durable=True,
            arguments=dict(self._queue_spec.arguments or {}),
        )
        await self._queue.bind(exchange, routing_key=self._queue_spec.routing)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self._name}-writer-{n}")
            for n in range(self._writers)
        ]
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop taking messages, finish the batches being handled, close the connection.

        Messages still buffered are not acknowledged: the broker redelivers them.
        """
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        self._consumer_tag = None
        self._buffer.clear()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._buffer.append(message)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._buffer:
                self._wake.clear()
                continue
            batch = self._buffer[: self._max_batch]
            del self._buffer[: self._max_batch]
            sequence = self._taken
            self._taken += 1
            await self._handle(batch, sequence)

    async def _handle(self, batch: list[AbstractIncomingMessage], sequence: int) -> None:
        started = time.perf_counter()
        self.batches += 1
        try:
            outcomes = list(await self._handler([m.body for m in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} messages")
        except Exception as exc:
            log.exception("batch handler failed", extra={"handler": self._name})
            outcomes = [Retry(f"{type(exc).__name__}: {exc}")] * len(batch)
        # Dead-letter before settling: the copy is confirmed before the original goes.
        for index, (message, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if isinstance(outcome, DeadLetter):
                try:
                    await dead_letter(
                        self._broker,
                        self._topology,
                        self._consumer,
                        self.queue_name,
                        message.body,
                        outcome.reason,
                    )
                except Exception:
                    log.exception("dead-lettering failed; the message goes back to the queue")
                    outcomes[index] = Retry("dead-lettering failed")
        async with self._settled_changed:
            await self._settled_changed.wait_for(lambda: self._settled == sequence)
        try:
            await self._settle(batch, outcomes)
        finally:
            async with self._settled_changed:
                self._settled += 1
                self._settled_changed.notify_all()
        seconds = time.perf_counter() - started
        self._metrics.handler_seconds.labels(self._name).observe(seconds / len(batch))
        counts: dict[str, int] = {}
        for outcome in outcomes:
            label = _label(outcome)
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            self._metrics.messages.labels(self._name, label).inc(count)

    async def _settle(self, batch: list[AbstractIncomingMessage], outcomes: list[Outcome]) -> None:
        try:
            for message, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Retry):
                    await message.nack(requeue=True)
            if not any(isinstance(o, Retry) for o in outcomes):
                # Everything up to the batch's last delivery is settled: one ack for all,
                # per channel (a reconnect starts a new channel and new delivery tags).
                last_per_channel = {id(m.channel): m for m in batch}
                for message in last_per_channel.values():
                    await message.ack(multiple=True)
            else:
                for message, outcome in zip(batch, outcomes, strict=True):
                    if not isinstance(outcome, Retry):
                        await message.ack()
        except Exception:
            # The channel closed under us: the broker redelivers what was not settled.
            log.warning("settling a batch failed; its messages will be redelivered", exc_info=True)


def _label(outcome: Outcome) -> str:
    if isinstance(outcome, Handled):
        return outcome.label
    return "dead_lettered" if isinstance(outcome, DeadLetter) else "error"
