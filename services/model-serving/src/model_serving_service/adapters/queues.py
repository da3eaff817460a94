"""Broker objects of model services: the predict exchange, one work queue per service
with its dead-letter queue, depth probes, and draining leftovers at undeploy.

The service process keeps its own aio-pika connection for these (FastStream caches
declarations; a passive declare must ask the broker every time).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelNotFoundEntity

from common.topology import DEAD_LETTER_REASON_HEADER, MODEL_SERVING, Topology


@dataclass(frozen=True)
class QueueDepth:
    """Ready messages and consumers of a queue (passive declare)."""

    messages: int
    consumers: int


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue."""

    reason: str | None
    body: bytes


class PredictQueues:
    """Declares, probes and removes the work queues of model services."""

    def __init__(self, amqp_url: str, topology: Topology) -> None:
        self.amqp_url = amqp_url
        self.topology = topology
        self._connection: AbstractRobustConnection | None = None

    async def connect(self) -> None:
        """Open the connection."""
        self._connection = await aio_pika.connect_robust(self.amqp_url, timeout=30)

    async def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            await self._connection.close()

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        # A fresh channel per operation: a failed passive declare closes its channel.
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    def queue_name(self, service_id: str) -> str:
        """``predict.<service_id>`` (with the topology prefix)."""
        return self.topology.predict_queue(service_id)

    async def declare(self, service_id: str) -> str:
        """Declare the service's quorum work queue, its dead-letter queue and bindings."""
        name = self.queue_name(service_id)
        dlq_name = self.topology.dead_letter_queue(name)
        async with self._channel() as channel:
            exchange = await channel.declare_exchange(
                self.topology.predict_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            dlx = await channel.declare_exchange(
                self.topology.dead_letter_exchange(MODEL_SERVING),
                aio_pika.ExchangeType.DIRECT,
                durable=True,
            )
            dlq = await channel.declare_queue(
                dlq_name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dlq.bind(dlx, routing_key=dlq_name)
            queue = await channel.declare_queue(
                name, durable=True, arguments=self.topology.queue_arguments(MODEL_SERVING, name)
            )
            await queue.bind(exchange, routing_key=service_id)
        return name

    async def depth(self, queue: str) -> QueueDepth | None:
        """Ready messages and consumers of ``queue``; None when it does not exist."""
        async with self._channel() as channel:
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except ChannelNotFoundEntity:
                return None
            result = declared.declaration_result
            return QueueDepth(int(result.message_count or 0), int(result.consumer_count or 0))

    async def drain(self, queue: str, handle: Callable[[bytes], Awaitable[None]]) -> int:
        """Hand every message left in ``queue`` to ``handle``, acking each after it; return
        how many there were (0 when the queue does not exist)."""
        count = 0
        async with self._channel() as channel:
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except ChannelNotFoundEntity:
                return 0
            while True:
                message = await declared.get(no_ack=False, fail=False)
                if message is None:
                    return count
                await handle(message.body)
                await message.ack()
                count += 1

    async def peek_dead_letters(self, service_id: str, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` messages of the service's dead-letter queue, left in place."""
        dlq_name = self.topology.dead_letter_queue(self.queue_name(service_id))
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            try:
                queue = await channel.declare_queue(dlq_name, passive=True)
            except ChannelNotFoundEntity:
                return []
            held: list[AbstractIncomingMessage] = []
            for _ in range(limit):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                held.append(message)
            letters = [
                DeadLetter(
                    reason=_header(m, DEAD_LETTER_REASON_HEADER) or _death_reason(m),
                    body=m.body,
                )
                for m in held
            ]
            # Closing the channel returns every held message to the queue, in order.
            return letters
        finally:
            if not channel.is_closed:
                await channel.close()

    async def delete(self, service_id: str) -> None:
        """Remove the service's work queue, its dead-letter queue and its retry queues."""
        name = self.queue_name(service_id)
        for queue in self.topology.queues_of(name, self.topology.retry_delays):
            async with self._channel() as channel:
                with contextlib.suppress(ChannelNotFoundEntity):
                    await channel.queue_delete(queue)

    async def unbind(self, service_id: str) -> None:
        """Stop routing new requests to the service's queue."""
        name = self.queue_name(service_id)
        async with self._channel() as channel:
            with contextlib.suppress(ChannelNotFoundEntity):
                queue = await channel.declare_queue(name, passive=True)
                await queue.unbind(self.topology.predict_exchange, routing_key=service_id)


def _header(message: AbstractIncomingMessage, key: str) -> str | None:
    value = (message.headers or {}).get(key)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value is not None else None


def _death_reason(message: AbstractIncomingMessage) -> str | None:
    deaths = (message.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason")
        if reason is not None:
            text = reason.decode() if isinstance(reason, bytes) else str(reason)
            return f"broker dead-lettered it ({text}: delivery limit reached or rejected)"
    return None
