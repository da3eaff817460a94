"""One way to subscribe a typed event handler with FastStream.

A handler is a module-level function of its contract::

    async def on_replica_started(event: CloudEvent[ReplicaStarted], deps: Deps) -> Handled:
        ...

and :func:`subscribe` puts around it what every handler needs, once: the raw body is
parsed into the contract (bad JSON, an unknown type or invalid fields are dead-lettered
with the reason), the event's ids go into the log context, the handler is timed and its
outcome counted in the service's metrics, a :class:`~common.consumer.DeadLetter` outcome
or one of the ``poison`` exceptions is dead-lettered with its message, and any other
exception (a passing failure: database, S3, another service) hands the message to a
retry queue that gives it back after a delay, for minutes, before it is dead-lettered with
the last error (:func:`common.messaging.retry_later`); only when the broker refuses that
copy is the exception re-raised so FastStream requeues the message at once.

Queues that carry thousands of messages a second use :class:`common.consumer.BatchConsumer`
instead; both share the outcome types.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream.rabbit import Channel, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.message import RabbitMessage

from common.consumer import HANDLED, RETRIED, DeadLetter, Handled
from common.contracts import Contract
from common.envelope import CloudEvent
from common.errors import ServiceError
from common.messaging import (
    PoisonMessageError,
    dead_letter,
    parse_event,
    retry_headers,
    retry_later,
)
from common.observability import ServiceMetrics, log_context
from common.topology import Topology

log = logging.getLogger(__name__)

EventHandler = Callable[[CloudEvent[Any]], Awaitable[Handled | DeadLetter | None]]
"""Handles one parsed event; ``None`` counts as handled."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where a handler listens and who it is in logs, metrics and dead letters."""

    consumer: str
    """The consuming service's topology name (``billing`` ...): its dead-letter exchange."""
    handler_name: str
    """The metrics label (``on_replica_started`` ...)."""
    queue: RabbitQueue
    exchange: RabbitExchange
    contracts: tuple[type[Contract], ...]
    """The event types the queue carries (one handler may take several)."""


async def whole_message(message: Any) -> Any:
    """The FastStream decoder of :func:`subscribe`: the handler (one argument) gets the
    message itself, its ``body`` raw (parsed in the handler, so bad input is dead-lettered
    with a reason) and its ``raw_message`` with the headers.

    Measured: a handler that asks FastStream for its message as a second argument
    (``message: RabbitMessage``) gets it through a context field that fast-depends
    resolves in a worker thread, per message: 7-9% of the router's and the billing
    service's CPU in the end-to-end benchmark went to that handoff.
    """
    return message


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ServiceError) else str(exc)


def subscribe(
    broker: RabbitBroker,
    topology: Topology,
    metrics: ServiceMetrics,
    subscription: Subscription,
    handler: EventHandler,
    *,
    prefetch: int,
    poison: tuple[type[BaseException], ...] = (),
) -> str:
    """Subscribe ``handler`` on ``subscription.queue``; return the queue's name.

    ``poison`` lists the exceptions that mean the message can never be handled (the
    service's domain errors): they are dead-lettered with their message, not retried.
    """
    s = subscription
    name = s.handler_name
    dead_on: tuple[type[BaseException], ...] = (PoisonMessageError, *poison)

    async def consume(delivered: Any) -> None:
        # Any, not RabbitMessage: FastStream would validate an annotated argument.
        message: RabbitMessage = delivered
        body: bytes = message.body
        with metrics.handler_seconds.labels(name).time():
            try:
                event = parse_event(body, *s.contracts)
                with log_context(event.id, event.correlationid):
                    outcome = await handler(event) or HANDLED
            except dead_on as exc:
                outcome = DeadLetter(_reason(exc))
            except Exception as exc:
                metrics.messages.labels(name, "error").inc()
                log.warning("handler failed; retrying later", exc_info=True)
                reason = f"{type(exc).__name__}: {_reason(exc)}"
                headers = message.raw_message.headers
                if await retry_later(
                    broker, topology, s.consumer, s.queue.name, body, reason, headers
                ):
                    metrics.messages.labels(name, RETRIED.label).inc()
                else:
                    metrics.messages.labels(name, "dead_lettered").inc()
                return
            if isinstance(outcome, DeadLetter):
                await dead_letter(
                    broker,
                    topology,
                    s.consumer,
                    s.queue.name,
                    body,
                    outcome.reason,
                    retry_headers(message.raw_message.headers),
                )
                metrics.messages.labels(name, "dead_lettered").inc()
                return
            metrics.messages.labels(name, outcome.label).inc()

    consume.__name__ = name
    consume.__qualname__ = name
    broker.subscriber(
        s.queue,
        s.exchange,
        decoder=whole_message,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )(consume)
    return s.queue.name
