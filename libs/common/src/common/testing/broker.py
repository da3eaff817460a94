"""Broker helpers for tests: watch an exchange, publish envelopes, clean up names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection


@dataclass
class Received:
    """One message a probe saw."""

    routing_key: str
    body: dict[str, Any]
    headers: dict[str, Any]

    @property
    def type(self) -> str:
        """The envelope's ``type``."""
        return str(self.body.get("type"))


@dataclass
class EventProbe:
    """Collects every message routed to a private queue bound to an exchange."""

    messages: list[Received] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                body = json.loads(message.body)
            except ValueError:
                body = {"raw": message.body.decode(errors="replace")}
            received = Received(message.routing_key or "", body, dict(message.headers))
            async with self._arrived:
                self.messages.append(received)
                self._arrived.notify_all()

    async def wait_for(
        self, count: int, *, timeout: float = 15.0, routing_key: str | None = None
    ) -> list[Received]:
        """Wait until ``count`` messages (with ``routing_key`` if given) arrived; return them."""

        def selected() -> list[Received]:
            return [m for m in self.messages if routing_key is None or m.routing_key == routing_key]

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(selected()) >= count)
        return selected()

    def of(self, routing_key: str) -> list[Received]:
        """Messages seen so far with ``routing_key``."""
        return [m for m in self.messages if m.routing_key == routing_key]


@contextlib.asynccontextmanager
async def probe_exchange(
    amqp_url: str, exchange: str, pattern: str = "#", *, exchange_type: str = "topic"
) -> AsyncIterator[EventProbe]:
    """Bind a private queue to ``exchange`` (declared if missing) and collect messages."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        ex = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType(exchange_type), durable=True
        )
        queue = await channel.declare_queue(f"probe.{uuid.uuid4().hex}", exclusive=True)
        await queue.bind(ex, routing_key=pattern)
        probe = EventProbe()
        await queue.consume(probe._on_message)
        yield probe
    finally:
        await connection.close()


async def publish_raw(
    amqp_url: str,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    exchange_type: str = "topic",
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish bytes with confirms (declaring the exchange if needed)."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType(exchange_type), durable=True
        )
        await ex.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers or {},
                message_id=uuid.uuid4().hex,
            ),
            routing_key=routing_key,
        )
    finally:
        await connection.close()


async def delete_names(amqp_url: str, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    """Delete test queues and exchanges (missing ones are ignored)."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()
