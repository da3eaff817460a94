"""A plain broker connection opened on demand, with a fresh channel per operation.

For management-style work beside a service's consumers (declaring, probing and deleting
queues, peeking at dead letters, replaying them). Not a robust connection: that one
reopens on reconnect every channel it ever made that is still alive and declares again
every queue declared on them, passive declares of queues deleted since included; one
NOT_FOUND then fails the reconnect, the same way every 5 s for ever (after a broker
restart, every model-serving deploy answered 500). Here every operation opens a channel
on the open connection, or on a new one, once, when the broker closed it (a restart, a
forced close); a fresh channel per operation also keeps one failed passive declare
(which closes its channel) from breaking the next operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPError
from yarl import URL

log = logging.getLogger(__name__)

BROKER_ERRORS = (OSError, RuntimeError, AMQPError)
"""What a lost or unreachable broker raises from ``connect`` and ``channel``."""


def broker_unavailable(exc: BaseException) -> str:
    """The message of an operation that could not reach the broker."""
    return f"the broker cannot be reached right now ({type(exc).__name__}: {exc})"


class OnDemandConnection:
    """One named connection (``rabbitmqctl list_connections client_properties``), opened
    when first needed and again when it is gone; ``channel()`` yields a fresh channel.

    ``unavailable`` turns a broker that cannot be reached into the caller's error (an
    HTTP 503, a domain error the API answers 503).
    """

    def __init__(
        self,
        amqp_url: str,
        name: str,
        *,
        unavailable: Callable[[str], Exception],
        connect_timeout: float = 10.0,
    ) -> None:
        self.amqp_url = amqp_url
        self.name = name
        self.unavailable = unavailable
        self.connect_timeout = connect_timeout
        self._connection: AbstractConnection | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    async def connect(self) -> None:
        """Open the connection now (every operation does when it is gone)."""
        await self._connected(fresh=False)

    async def close(self) -> None:
        """Close the connection; later operations raise ``ConnectionError``."""
        self._closed = True
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _connected(self, *, fresh: bool) -> AbstractConnection:
        """The open connection; a new one when ``fresh`` or none is open."""
        async with self._connecting:
            if self._closed:
                raise ConnectionError(f"{self.name}: closed")
            if fresh and self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
            if self._connection is None or self._connection.is_closed:
                url = URL(self.amqp_url).update_query(name=self.name)
                self._connection = await aio_pika.connect(url, timeout=self.connect_timeout)
                if fresh:
                    log.info("%s reconnected to the broker", self.name)
            return self._connection

    async def _open_channel(self, on_return_raises: bool) -> AbstractChannel:
        try:
            connection = await self._connected(fresh=False)
            try:
                return await connection.channel(
                    publisher_confirms=True, on_return_raises=on_return_raises
                )
            except Exception:
                # The broker closed the connection: aio-pika's plain connection does not
                # always say so in ``is_closed``; open a new one, once.
                connection = await self._connected(fresh=True)
                return await connection.channel(
                    publisher_confirms=True, on_return_raises=on_return_raises
                )
        except BROKER_ERRORS as exc:
            raise self.unavailable(broker_unavailable(exc)) from exc

    @contextlib.asynccontextmanager
    async def channel(self, *, on_return_raises: bool = False) -> AsyncIterator[AbstractChannel]:
        """A fresh channel with publisher confirms, closed afterwards (closing it gives
        every message still held back to its queue)."""
        channel = await self._open_channel(on_return_raises)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
