"""The transactional outbox and its relay, and message claims for idempotent consumers.

State change and event publish never happen as ``commit(); publish()``: the
event row is written by :func:`enqueue` inside the caller's transaction and the
:class:`OutboxRelay` publishes it with publisher confirms afterwards, deleting
the row only once the broker confirmed it. A crash between commit and publish
therefore delays the event, never loses it; a crash between confirm and delete
publishes it twice, which idempotent consumers absorb (:func:`claim_message`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from common.envelope import CloudEvent
from common.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

COMMON_MIGRATIONS = Path(str(files("common") / "migrations"))
"""Migrations every service applies first (outbox, processed_messages)."""


# --------------------------------------------------------------------------- idempotency


async def claim_message(conn: asyncpg.Connection, consumer: str, message_id: str) -> bool:
    """Record that ``consumer`` handles ``message_id``; False if it already did.

    Call inside the transaction of the handler's effect: the effect and the claim
    commit together or not at all.
    """
    row = await conn.fetchval(
        """INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING 1""",
        consumer,
        message_id,
    )
    return row is not None


async def claim_messages(
    conn: asyncpg.Connection, consumer: str, message_ids: Iterable[str]
) -> set[str]:
    """Record that ``consumer`` handles each of ``message_ids`` in one statement; return
    the ids it had not handled before (a batch's :func:`claim_message`).

    Duplicates inside ``message_ids`` are claimed once. Call inside the transaction of
    the batch's effect, like :func:`claim_message`.
    """
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO processed_messages (consumer, message_id)
           SELECT $1, m FROM unnest($2::text[]) AS t(m)
           ON CONFLICT DO NOTHING RETURNING message_id""",
        consumer,
        ids,
    )
    return {r["message_id"] for r in rows}


async def claimed_messages(
    conn: asyncpg.Connection | asyncpg.Pool, consumer: str, message_ids: Iterable[str]
) -> set[str]:
    """Which of ``message_ids`` ``consumer`` has already claimed (a read, claims nothing):
    lets a batch skip work a redelivery would only repeat."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        """SELECT message_id FROM processed_messages
           WHERE consumer = $1 AND message_id = ANY($2::text[])""",
        consumer,
        ids,
    )
    return {r["message_id"] for r in rows}


# --------------------------------------------------------------------------- outbox


async def enqueue(
    conn: asyncpg.Connection,
    event: CloudEvent[Any],
    exchange: str,
    *,
    routing_key: str | None = None,
    exchange_type: str = "topic",
    headers: dict[str, Any] | None = None,
) -> None:
    """Write ``event`` to the outbox inside the caller's transaction.

    ``routing_key`` defaults to the event's own key; predict requests pass the
    service id for the direct exchange. A NOTIFY wakes the relay at commit.
    """
    # One round trip: the row, and a NOTIFY that wakes the relay at commit.
    await conn.execute(
        f"""WITH row AS (
               INSERT INTO outbox (event_id, exchange, exchange_type, routing_key, body, headers)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING RETURNING id)
           SELECT {notify_relay("row")}""",
        event.id,
        exchange,
        exchange_type,
        routing_key or event.routing_key,
        event.to_json_bytes(),
        headers or {},
    )


def notify_relay(rows: str) -> str:
    """SQL expression that wakes the relay when the transaction commits, for the outbox
    rows that the CTE ``rows`` inserted (``RETURNING id``, as :func:`outbox_insert`
    does). The payload is their highest id, so a relay that already published them
    (its round read them before this NOTIFY arrived) does not go round again for
    nothing; ``0`` when the CTE inserted none (duplicates)."""
    return (
        f"pg_notify('outbox_' || current_schema(), (SELECT coalesce(max(id), 0) FROM {rows})::text)"
    )


def outbox_insert(source: str, *, event_id: str, exchange: str, routing_key: str, body: str) -> str:
    """SQL of an ``INSERT INTO outbox`` writing one event per row of ``source`` (a CTE
    or a join), for changes and their events in one statement (one round trip, atomic
    on its own).

    ``event_id``, ``exchange``, ``routing_key`` and ``body`` are SQL expressions:
    parameters, or columns of ``source``. The rows' ids are returned: select
    :func:`notify_relay` of the CTE in the statement's final ``SELECT`` to wake the relay.
    """
    return f"""INSERT INTO outbox (event_id, exchange, exchange_type, routing_key, body, headers)
               SELECT {event_id}, {exchange}, 'topic', {routing_key}, {body}, '{{}}'::jsonb
               FROM {source}
               ON CONFLICT (event_id) DO NOTHING
               RETURNING id"""


class OutboxEvent(Protocol):
    """What :func:`enqueue_many` needs of an event: a :class:`CloudEvent`, or an envelope
    a hot path already serialised (its id, routing key and JSON bytes)."""

    @property
    def id(self) -> str:
        """Event id (the outbox deduplicates on it)."""
        ...

    @property
    def routing_key(self) -> str:
        """Routing key it is published with."""
        ...

    def to_json_bytes(self) -> bytes:
        """The envelope as sent."""
        ...


async def enqueue_many(
    conn: asyncpg.Connection,
    events: Iterable[OutboxEvent],
    exchange: str,
    *,
    exchange_type: str = "topic",
    routing_keys: Sequence[str] | None = None,
) -> int:
    """Write many events (each with its own routing key) to the outbox in one statement.

    Same guarantees as :func:`enqueue` (inside the caller's transaction, duplicate event
    ids ignored), but one round trip for the rows and the NOTIFY, for handlers that emit
    an event per stored row. ``routing_keys`` (one per event) overrides the events' own
    keys, e.g. service ids for predict requests on the direct exchange. Returns how many
    events were given.
    """
    batch = list(events)
    if not batch:
        return 0
    keys = list(routing_keys) if routing_keys is not None else [e.routing_key for e in batch]
    if len(keys) != len(batch):
        raise ValueError(f"{len(keys)} routing keys for {len(batch)} events")
    await conn.execute(
        f"""WITH rows AS (
               INSERT INTO outbox (event_id, exchange, exchange_type, routing_key, body, headers)
               SELECT e, $1, $2, k, b, '{{}}'::jsonb
               FROM unnest($3::text[], $4::text[], $5::bytea[]) AS t(e, k, b)
               ON CONFLICT (event_id) DO NOTHING
               RETURNING id)
           SELECT {notify_relay("rows")}""",
        exchange,
        exchange_type,
        [event.id for event in batch],
        keys,
        [event.to_json_bytes() for event in batch],
    )
    return len(batch)


async def _notify_channel(conn: asyncpg.Connection) -> str:
    schema: str = await conn.fetchval("SELECT current_schema()")
    return f"outbox_{schema}"


class OutboxRelay:
    """Publishes outbox rows with confirms, in id order, then deletes them.

    Several relays (replicas) may run: rows are claimed with ``FOR UPDATE SKIP
    LOCKED``. The relay sleeps on LISTEN/NOTIFY, with a poll as a safety net.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        amqp_url: str,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        linger_seconds: float = 0.0,
    ) -> None:
        self._pool = pool
        self._amqp_url = amqp_url
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._linger_seconds = linger_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._listen_conn: asyncpg.Connection | None = None
        self._recent: collections.deque[frozenset[int]] = collections.deque(maxlen=8)
        """Ids published in the last rounds: their NOTIFYs need no round of their own."""
        self.published = 0

    async def start(self) -> None:
        """Connect and start relaying in the background."""
        self._connection = await aio_pika.connect_robust(self._amqp_url)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._listen_conn = await self._pool.acquire()
        channel = await _notify_channel(self._listen_conn)
        await self._listen_conn.add_listener(channel, self._on_notify)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "0":
            return
        if payload.isdigit() and any(int(payload) in ids for ids in self._recent):
            return
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the current batch (so confirmed rows are deleted) and close connections."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._listen_conn is not None:
            with contextlib.suppress(Exception):
                await self._listen_conn.remove_listener(
                    await _notify_channel(self._listen_conn), self._on_notify
                )
            await self._pool.release(self._listen_conn)
        if self._connection is not None:
            await self._connection.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the round, not after: a commit whose NOTIFY arrives while
            # the round runs, too late for its SELECT, gets the next round at once (it
            # used to wait for the poll, or the next commit).
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                raise_if_cancelling()
                log.exception("outbox relay failed; retrying")
                sent = 0
                await asyncio.sleep(1.0)
            if sent < self._batch_size and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                    # Woken by a commit. No linger by default: a busy service batches
                    # anyway, since the commits made while a round waits for its
                    # confirms (quorum queues: milliseconds) go in the next round; an
                    # idle one relays at once (2 ms linger: idle latency 4 ms longer,
                    # the same throughput; bench e2e).
                    await asyncio.sleep(self._linger_seconds)

    async def _exchange(self, name: str, kind: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            assert self._channel is not None
            exchange = await self._channel.declare_exchange(
                name, aio_pika.ExchangeType(kind), durable=True
            )
            self._exchanges[name] = exchange
        return exchange

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, event_id, exchange, exchange_type, routing_key, body, headers
                   FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            if not rows:
                return 0
            # Straight to aiormq: aio-pika's Message and Exchange wrappers cost more per
            # event than the publish itself. Events are facts, published without
            # ``mandatory`` (an event nobody subscribes to is not an error).
            for row in rows:
                await self._exchange(row["exchange"], row["exchange_type"])
            assert self._channel is not None
            channel = await self._channel.get_underlay_channel()
            publishes = [
                channel.basic_publish(
                    bytes(row["body"]),
                    exchange=row["exchange"],
                    routing_key=row["routing_key"],
                    properties=aiormq.spec.Basic.Properties(
                        content_type="application/json",
                        delivery_mode=2,
                        message_id=row["event_id"],
                        headers=row["headers"] or None,
                    ),
                )
                for row in rows
            ]
            # Pipelined publishes: the batch waits on all confirms at once.
            for confirmation in await asyncio.gather(*publishes):
                if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                    raise ConnectionError(f"broker did not confirm an outbox event: {confirmation}")
            ids = [r["id"] for r in rows]
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
        self._recent.append(frozenset(ids))
        self.published += len(rows)
        return len(rows)
