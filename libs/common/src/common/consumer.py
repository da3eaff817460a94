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
  (confirmed), bodies to retry go to a retry queue that hands them back after a delay
  (:func:`common.messaging.retry_later`: backoff for minutes, then the dead-letter queue
  with the last error; immediately requeued only when that publish fails), and the rest
  are acknowledged with one ``basic.ack(multiple)`` per batch.

Batches settle in the order they were taken, so a multiple ack never covers a
delivery of a batch still being handled. A message is acknowledged only after the
handler returned, i.e. after its effect committed: at-least-once holds, and the
handler must be idempotent. Messages buffered when the connection drops are
redelivered by the broker.

Options for a queue whose batches cost more than their messages (a predict worker's
Triton call): ``linger`` waits that long for a batch to fill once its first delivery is
in hand (not when every prefetch slot is already held: nothing more can arrive), and
with ``linger_when_idle=False`` only while another batch is being handled, so an idle
consumer hands a lone delivery over at once and batches form only under load;
``ordered=False`` lets each batch settle as soon as it is done, one ack per message, so
a slow batch does not hold back the acks of the quick ones; a handler of
:class:`Delivery` objects sees headers and receipt times; ``exchange=None`` consumes a
queue that another service declares and binds (declared passively); and
``stop(drain=...)`` finishes what is held within a time limit and requeues the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue

from common.messaging import dead_letter, retry_headers, retry_later
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
RETRIED = Handled("retried")
"""Handed to a retry queue: it comes back after a delay."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message can never be handled: move it to the dead-letter queue."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Handling failed for a passing reason (a database, S3 or Triton outage): hand the
    message back after a delay (:func:`common.messaging.retry_later`), and dead-letter it
    with ``reason`` once its delayed retries are spent. ``delayed=False`` puts it back at
    once (it was only not handled yet, e.g. a replica stopping)."""

    reason: str
    delayed: bool = True


Outcome = Handled | DeadLetter | Retry
"""What became of one message."""

BatchHandler = Callable[[Sequence[bytes]], Awaitable[Sequence[Outcome]]]
"""Handles the bodies of a batch; returns one outcome per body, in order."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered message, as a :data:`DeliveryHandler` sees it."""

    body: bytes
    headers: Mapping[str, Any]
    received: float
    """``time.monotonic()`` when the consumer received it."""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """Wall-clock time of receipt."""

    @property
    def delivery_count(self) -> int | None:
        """The quorum queue's ``x-delivery-count`` (absent on the first delivery)."""
        count = self.headers.get("x-delivery-count")
        return count if isinstance(count, int) else None


DeliveryHandler = Callable[[Sequence[Delivery]], Awaitable[Sequence[Outcome]]]
"""Handles the deliveries of a batch; returns one outcome per delivery, in order."""


@dataclass(eq=False, slots=True)
class _Held:
    message: AbstractIncomingMessage
    delivery: Delivery
    settled: bool = False


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
        exchange: RabbitExchange | None,
        handler: BatchHandler | None = None,
        delivery_handler: DeliveryHandler | None = None,
        metrics: ServiceMetrics,
        prefetch: int,
        max_batch: int,
        writers: int = 1,
        linger: float = 0.0,
        linger_when_idle: bool = True,
        ordered: bool = True,
        connect_timeout: float | None = None,
        bindings: Sequence[str] = (),
    ) -> None:
        """Pass exactly one of ``handler`` (bodies) and ``delivery_handler``.

        ``exchange=None``: the queue and its binding belong to another service; it is
        declared passively (``aiormq``'s ``ChannelNotFoundEntity`` when it is missing).
        ``bindings``: routing keys the queue is bound with besides the queue's own (one
        queue for several event types, e.g. the four item events).
        """
        if (handler is None) == (delivery_handler is None):
            raise TypeError("pass exactly one of handler and delivery_handler")
        self._amqp_url = amqp_url
        self._broker = broker
        self._topology = topology
        self._consumer = consumer
        self._name = handler_name
        self._queue_spec = queue
        self._exchange_spec = exchange
        self._handler = handler
        self._delivery_handler = delivery_handler
        self._metrics = metrics
        self._prefetch = prefetch
        self._max_batch = max_batch
        self._writers = writers
        self._linger = linger
        self._linger_when_idle = linger_when_idle
        self._handling = 0
        self._ordered = ordered
        self._connect_timeout = connect_timeout
        self._bindings = tuple(bindings)
        self._buffer: list[_Held] = []
        self._wake = asyncio.Event()
        self._taking = asyncio.Lock()
        self._stopping = False
        self._in_hand: set[_Held] = set()
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

    @property
    def held(self) -> int:
        """Deliveries received and not yet settled (buffered or being handled)."""
        return len(self._in_hand)

    async def declare(self) -> None:
        """Connect and declare the queue (and its binding) without consuming yet."""
        self._connection = await aio_pika.connect_robust(
            self._amqp_url, timeout=self._connect_timeout
        )
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        if self._exchange_spec is None:
            self._queue = await channel.declare_queue(self._queue_spec.name, passive=True)
        else:
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
            for key in dict.fromkeys((self._queue_spec.routing, *self._bindings)):
                await self._queue.bind(exchange, routing_key=key)

    async def start(self) -> None:
        """Declare the queue and its binding (unless :meth:`declare` did), and start
        consuming."""
        self._taken = self._settled = 0
        self._stopping = False
        if self._queue is None:
            await self.declare()
        assert self._queue is not None
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self._name}-writer-{n}")
            for n in range(self._writers)
        ]
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self, drain: float | None = None) -> int:
        """Stop taking messages, close the connection; return how many were requeued.

        Without ``drain``: the batches being handled are cancelled and the messages
        still buffered are not acknowledged: the broker redelivers them. With
        ``drain``: the buffered messages are handled too, for up to ``drain`` seconds;
        whatever is still held then is rejected back onto the queue.
        """
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        self._consumer_tag = None
        self._stopping = True
        if drain is None:
            self._buffer.clear()
        self._wake.set()
        if drain is not None and self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain):
                    await asyncio.wait(self._tasks)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        requeued = 0
        if drain is not None:
            for held in list(self._in_hand):
                requeued += await self._requeue(held)
        self._buffer.clear()
        self._in_hand.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._queue = None
        return requeued

    async def _requeue(self, held: _Held) -> int:
        self._release(held)
        try:
            await held.message.nack(requeue=True)
        except Exception:
            log.warning("requeueing a held message failed", exc_info=True)
            return 0
        return 1

    def _release(self, held: _Held) -> None:
        held.settled = True
        self._in_hand.discard(held)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        held = _Held(message, Delivery(message.body, message.headers or {}, time.monotonic()))
        self._in_hand.add(held)
        self._buffer.append(held)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            taken = await self._take()
            if taken is None:
                return
            self._handling += 1
            try:
                await self._handle(*taken)
            finally:
                self._handling -= 1

    async def _take(self) -> tuple[list[_Held], int] | None:
        """The next batch and its sequence number; None once stopping with none left."""
        async with self._taking:
            while not self._buffer:
                if self._stopping:
                    return None
                self._wake.clear()
                await self._wake.wait()
            if self._linger > 0 and (self._linger_when_idle or self._handling > 0):
                await self._fill(time.monotonic() + self._linger)
            batch = self._buffer[: self._max_batch]
            del self._buffer[: self._max_batch]
            sequence = self._taken
            self._taken += 1
            return batch, sequence

    async def _fill(self, deadline: float) -> None:
        """Wait until the batch is full, ``deadline`` passes, or nothing more can come."""
        while (
            len(self._buffer) < self._max_batch
            and len(self._in_hand) < self._prefetch
            and not self._stopping
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _call_handler(self, batch: list[_Held]) -> list[Outcome]:
        if self._delivery_handler is not None:
            return list(await self._delivery_handler([h.delivery for h in batch]))
        assert self._handler is not None
        return list(await self._handler([h.message.body for h in batch]))

    async def _handle(self, batch: list[_Held], sequence: int) -> None:
        started = time.perf_counter()
        self.batches += 1
        try:
            outcomes = await self._call_handler(batch)
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} messages")
        except Exception as exc:
            log.exception("batch handler failed", extra={"handler": self._name})
            outcomes = [Retry(f"{type(exc).__name__}: {exc}")] * len(batch)
        # Dead-letter before settling: the copy is confirmed before the original goes.
        for index, (held, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if isinstance(outcome, DeadLetter):
                try:
                    await dead_letter(
                        self._broker,
                        self._topology,
                        self._consumer,
                        self.queue_name,
                        held.message.body,
                        outcome.reason,
                        retry_headers(held.message.headers),
                    )
                except Exception:
                    log.exception("dead-lettering failed; the message goes back to the queue")
                    outcomes[index] = Retry("dead-lettering failed", delayed=False)
        await self._retry_later(batch, outcomes)
        if self._ordered:
            async with self._settled_changed:
                await self._settled_changed.wait_for(lambda: self._settled == sequence)
            try:
                await self._settle(batch, outcomes)
            finally:
                async with self._settled_changed:
                    self._settled += 1
                    self._settled_changed.notify_all()
        else:
            await self._settle_each(batch, outcomes)
        seconds = time.perf_counter() - started
        self._metrics.handler_seconds.labels(self._name).observe(seconds / len(batch))
        counts: dict[str, int] = {}
        for outcome in outcomes:
            label = _label(outcome)
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            self._metrics.messages.labels(self._name, label).inc(count)

    async def _retry_later(self, batch: list[_Held], outcomes: list[Outcome]) -> None:
        """Send each delayed :class:`Retry` to its retry queue (or, retries spent, to the
        dead-letter queue); the original is then acknowledged like a handled message. If
        the broker refuses the copy, the message is requeued at once instead."""
        for index, (held, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if not (isinstance(outcome, Retry) and outcome.delayed):
                continue
            try:
                scheduled = await retry_later(
                    self._broker,
                    self._topology,
                    self._consumer,
                    self.queue_name,
                    held.message.body,
                    outcome.reason,
                    held.delivery.headers,
                )
            except Exception:
                log.warning("scheduling a retry failed; requeueing at once", exc_info=True)
                outcomes[index] = Retry(outcome.reason, delayed=False)
                continue
            outcomes[index] = RETRIED if scheduled else DeadLetter(outcome.reason)

    async def _settle(self, batch: list[_Held], outcomes: list[Outcome]) -> None:
        for held in batch:
            self._release(held)
        messages = [held.message for held in batch]
        try:
            for message, outcome in zip(messages, outcomes, strict=True):
                if isinstance(outcome, Retry):
                    await message.nack(requeue=True)
            if not any(isinstance(o, Retry) for o in outcomes):
                # Everything up to the batch's last delivery is settled: one ack for all,
                # per channel (a reconnect starts a new channel and new delivery tags).
                last_per_channel = {id(m.channel): m for m in messages}
                for message in last_per_channel.values():
                    await message.ack(multiple=True)
            else:
                for message, outcome in zip(messages, outcomes, strict=True):
                    if not isinstance(outcome, Retry):
                        await message.ack()
        except Exception:
            # The channel closed under us: the broker redelivers what was not settled.
            log.warning("settling a batch failed; its messages will be redelivered", exc_info=True)

    async def _settle_each(self, batch: list[_Held], outcomes: list[Outcome]) -> None:
        """Settle one batch on its own: one ack (or reject) per message."""
        for held, outcome in zip(batch, outcomes, strict=True):
            if held.settled:
                continue
            self._release(held)
            try:
                if isinstance(outcome, Retry):
                    await held.message.nack(requeue=True)
                else:
                    await held.message.ack()
            except Exception:
                # The channel died: the broker redelivers (and the handler is idempotent).
                log.warning("settling a message failed; it will be redelivered", exc_info=True)


def _label(outcome: Outcome) -> str:
    if isinstance(outcome, Handled):
        return outcome.label
    return "dead_lettered" if isinstance(outcome, DeadLetter) else "error"
