"""Predict queue statistics from the broker, without the management plugin."""

from __future__ import annotations

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection


class QueueInspector:
    """Reads predict queue depth with passive declares on a connection of its own."""

    def __init__(self, amqp_url: str, timeout: float = 5.0) -> None:
        self._url = amqp_url
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def stats(self, queue: str) -> tuple[bool, int, int]:
        """(exists, ready messages, consumers); a missing queue is (False, 0, 0)."""
        # ``is_closed`` only turns true after ``close()``: a connection the broker dropped
        # (a restart, an outage) shows up as not ``connected`` instead.
        if (
            self._connection is None
            or self._connection.is_closed
            or not self._connection.connected.is_set()
        ):
            # Not robust on purpose: a robust channel would replay passive declares of
            # missing queues on reconnect; a plain one is simply rebuilt here.
            self._connection = await aio_pika.connect(self._url, timeout=self._timeout)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        try:
            declared = await self._channel.declare_queue(queue, passive=True, timeout=self._timeout)
        except aiormq.exceptions.ChannelNotFoundEntity:
            # The broker closed the channel with 404: the service's queue is not declared
            # yet (model-serving declares it on deploy). No queue, no load.
            self._channel = None
            return False, 0, 0
        except (RuntimeError, aiormq.exceptions.AMQPConnectionError, ConnectionError):
            # A dead connection: drop it so the next reconcile connects afresh.
            self._connection, self._channel = None, None
            raise
        result = declared.declaration_result
        return True, int(result.message_count or 0), int(result.consumer_count or 0)

    async def close(self) -> None:
        """Close the connection."""
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None
