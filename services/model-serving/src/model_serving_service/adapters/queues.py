"""Broker objects of model services: the predict exchange, one work queue per service
with its dead-letter queue, depth probes, and draining leftovers at undeploy.

The service process keeps its own aio-pika connection for these (FastStream caches
declarations; a passive declare must ask the broker every time). It is a plain connection,
opened again on demand when it is gone, not a robust one: a robust connection reopens on
reconnect every channel it ever made that is still alive and declares again every queue
declared on them, passive declares of queues deleted since included; one NOT_FOUND then
fails the reconnect, and it fails the same way every 5 s for ever (after a broker
restart, every deploy answered 500).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelNotFoundEntity

from common.channels import OnDemandConnection
from common.topology import DEAD_LETTER_REASON_HEADER, MODEL_SERVING, Topology
from model_serving_service.domain.errors import UnavailableError

log = logging.getLogger(__name__)


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

    def __init__(self, amqp_url: str, topology: Topology, *, connect_timeout: float = 10.0) -> None:
        self.amqp_url = amqp_url
        self.topology = topology
        self.connection_name = f"model-serving queues {topology.prefix}".strip()
        """How the broker lists this connection (``rabbitmqctl list_connections
        client_properties``)."""
        self._broker = OnDemandConnection(
            amqp_url,
            self.connection_name,
            unavailable=UnavailableError,
            connect_timeout=connect_timeout,
        )

    async def connect(self) -> None:
        """Open the connection (again when it is gone: every operation does)."""
        await self._broker.connect()

    async def close(self) -> None:
        """Close the connection."""
        await self._broker.close()

    async def ping(self) -> None:
        """Readiness: a channel opens on the connection (reconnecting if it was lost);
        raises when the broker cannot be reached."""
        async with self._channel():
            pass

    def _channel(self) -> contextlib.AbstractAsyncContextManager[AbstractChannel]:
        # A fresh channel per operation: a failed passive declare closes its channel.
        return self._broker.channel()

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
        async with self._channel() as channel:
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

    def retry_queue_names(self, service_id: str) -> list[str]:
        """The service's retry queues (``<queue>.retry.<ms>ms``), where requests that failed
        for a passing reason wait before they go back to the work queue."""
        name = self.queue_name(service_id)
        return [
            q
            for q in self.topology.queues_of(name, self.topology.retry_delays)
            if q not in (name, self.topology.dead_letter_queue(name))
        ]

    async def delete(self, service_id: str) -> None:
        """Remove the service's retry queues, its work queue and its dead-letter queue (in
        that order: a retry that expires meanwhile still finds the work queue)."""
        name = self.queue_name(service_id)
        for queue in [
            *self.retry_queue_names(service_id),
            name,
            self.topology.dead_letter_queue(name),
        ]:
            await self.delete_queue(queue)

    async def delete_queue(self, queue: str) -> None:
        """Remove one queue (nothing when it does not exist)."""
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
