"""Broker plumbing: exchanges and quorum queues with dead-lettering, parsing an envelope
into its contract, dead letters with a reason and delayed retries. The transactional
outbox, its relay and message claims are in :mod:`common.outbox`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas import QueueType
from pydantic import ValidationError

from common.contracts import Contract
from common.envelope import TYPE_PREFIX, CloudEvent, envelope_type
from common.topology import (
    DEAD_LETTER_REASON_HEADER,
    DEFAULT_RETRY_DELAYS,
    LAST_ERROR_HEADER,
    RETRIES_HEADER,
    Topology,
)

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Contract)

# --------------------------------------------------------------------------- topology


def events_exchange(topology: Topology, producer: str) -> RabbitExchange:
    """The durable topic exchange of a producer's events."""
    return RabbitExchange(topology.events_exchange(producer), type=ExchangeType.TOPIC, durable=True)


def commands_exchange(topology: Topology, owner: str) -> RabbitExchange:
    """The durable topic exchange of commands addressed to ``owner``."""
    return RabbitExchange(topology.commands_exchange(owner), type=ExchangeType.TOPIC, durable=True)


def predict_exchange(topology: Topology) -> RabbitExchange:
    """The durable direct exchange of predict requests (key = service id)."""
    return RabbitExchange(topology.predict_exchange, type=ExchangeType.DIRECT, durable=True)


def consumer_queue(
    topology: Topology, consumer: str, handler: str, routing_key: str
) -> RabbitQueue:
    """A durable quorum queue ``<consumer>.<handler>`` with dead-lettering and a delivery limit."""
    name = topology.queue(consumer, handler)
    queue: RabbitQueue = RabbitQueue(  # type: ignore[call-overload]
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=routing_key,
        arguments=topology.queue_arguments(consumer, name),
    )
    return queue


async def declare_dead_letter(
    broker: RabbitBroker, topology: Topology, consumer: str, queues: Iterable[str]
) -> None:
    """Declare ``<consumer>.dlx`` and one ``<queue>.dlq`` quorum queue per queue, bound."""
    dlx = await broker.declare_exchange(
        RabbitExchange(
            topology.dead_letter_exchange(consumer), type=ExchangeType.DIRECT, durable=True
        )
    )
    for queue in queues:
        dlq_name = topology.dead_letter_queue(queue)
        dlq = await broker.declare_queue(
            RabbitQueue(dlq_name, queue_type=QueueType.QUORUM, durable=True)
        )
        await dlq.bind(dlx, routing_key=dlq_name)


async def delete_topology(
    amqp_url: str,
    queues: Iterable[str],
    exchanges: Iterable[str],
    retry_delays: Iterable[float] = DEFAULT_RETRY_DELAYS,
) -> None:
    """Delete queues (with their dead-letter and retry queues) and exchanges; missing
    ones are fine.

    Quorum queues hold files open on the broker: throwaway runs remove theirs.
    """
    delays = tuple(retry_delays)
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        names = [n for q in queues for n in Topology.queues_of(q, delays)]
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for exchange in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# --------------------------------------------------------------------------- parsing


async def raw_body(message: Any) -> bytes:
    """A FastStream decoder handing handlers the raw bytes.

    Parsing happens in the handler (``parse_event``), so bad JSON or an unknown
    version is dead-lettered with a reason, and a failure inside the handler is
    requeued up to the delivery limit. With FastStream's own decoding, a body that
    fails validation never reaches the handler and is rejected without a reason.
    """
    body: bytes = message.body
    return body


class PoisonMessageError(Exception):
    """A message that can never be processed (bad JSON, unknown type, invalid fields)."""


def parse_event(body: bytes | str | dict[str, Any], *contracts: type[C]) -> CloudEvent[C]:
    """Parse an envelope whose data must be one of ``contracts`` (chosen by ``type``).

    Raises :class:`PoisonMessageError` with a reason a person can act on.
    """
    if len(contracts) == 1 and isinstance(body, bytes | str):
        # Hot path: pydantic parses and validates the JSON in one pass (several times
        # faster than json.loads + model_validate). Anything wrong falls through to the
        # step-by-step path below, which says what is wrong.
        only = contracts[0]
        try:
            event: CloudEvent[C] = envelope_type(only).model_validate_json(body)
        except ValueError:
            pass
        else:
            if event.type == TYPE_PREFIX + only.routing_key:
                return event
    try:
        raw: Any = json.loads(body) if isinstance(body, bytes | str) else body
    except ValueError as exc:
        raise PoisonMessageError(f"body is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PoisonMessageError("body is not a JSON object (expected a CloudEvents envelope)")
    event_type = raw.get("type")
    by_type = {f"prelabel.{c.routing_key}": c for c in contracts}
    contract = by_type.get(event_type) if isinstance(event_type, str) else None
    if contract is None:
        expected = ", ".join(sorted(by_type))
        raise PoisonMessageError(
            f"unsupported event type {event_type!r}; expected one of: {expected}"
        )
    try:
        return envelope_type(contract).model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PoisonMessageError(f"invalid {event_type}: {problems}") from exc


async def dead_letter(
    broker: RabbitBroker,
    topology: Topology,
    consumer: str,
    queue: str,
    body: bytes,
    reason: str,
    headers: dict[str, Any] | None = None,
) -> None:
    """Send ``body`` to ``queue``'s dead-letter queue with ``reason`` in a header.

    The broker confirms the publish before this returns, so the caller may then ack
    the original: the message moves, it is never dropped.
    """
    log.warning("dead-lettering message", extra={"queue": queue, "reason": reason})
    await broker.publish(
        body,
        exchange=topology.dead_letter_exchange(consumer),
        routing_key=topology.dead_letter_queue(queue),
        headers={**(headers or {}), DEAD_LETTER_REASON_HEADER: reason[:1000]},
        persist=True,
        content_type="application/json",
        # When it died: what a listing of dead letters shows (common.dead_letters).
        timestamp=datetime.now(UTC),
    )


def retry_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a message keeps through a delayed retry: its own, without the
    broker's delivery bookkeeping (``x-delivery-count``, ``x-death`` ...)."""
    kept: dict[str, Any] = {}
    for key, value in (headers or {}).items():
        if key.startswith("x-") and not key.startswith("x-prelabel-"):
            continue
        kept[key] = value
    return kept


def retries_of(headers: Mapping[str, Any] | None) -> int:
    """How many delayed retries a message has had."""
    value = (headers or {}).get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def retry_later(
    broker: RabbitBroker,
    topology: Topology,
    consumer: str,
    queue: str,
    body: bytes,
    reason: str,
    headers: Mapping[str, Any] | None = None,
) -> bool:
    """Hand a message that failed for a passing reason back to ``queue`` after a delay;
    once its retries (``topology.retry_delays``) are spent, dead-letter it with the last
    error. Returns True when it was scheduled, False when it was dead-lettered.

    The copy is confirmed before this returns, so the caller then acks the original: the
    message is never lost (a crash in between delivers it twice, and consumers are
    idempotent). A retried message is a new delivery, so the quorum queue's delivery
    limit is left to redeliveries after crashes.
    """
    done = retries_of(headers)
    delays = topology.retry_delays
    if done >= len(delays):
        waited = sum(delays)
        await dead_letter(
            broker,
            topology,
            consumer,
            queue,
            body,
            f"gave up after {done} delayed retries over {waited:g}s: {reason}",
            retry_headers(headers),
        )
        return False
    delay = delays[done]
    name = topology.retry_queue(queue, delay)
    retry_queue: RabbitQueue = RabbitQueue(  # type: ignore[call-overload]
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=topology.retry_queue_arguments(queue, delay),
    )
    await broker.declare_queue(retry_queue)
    log.info(
        "retrying message later",
        extra={"queue": queue, "delay_s": delay, "retry": done + 1, "reason": reason},
    )
    await broker.publish(
        body,
        routing_key=name,
        headers={
            **retry_headers(headers),
            RETRIES_HEADER: done + 1,
            LAST_ERROR_HEADER: reason[:1000],
        },
        persist=True,
        content_type="application/json",
    )
    return True
