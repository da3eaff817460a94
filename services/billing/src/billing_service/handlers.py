"""Broker handlers of the billing service: replica events feed the runtime meter,
predictions are counted per service, day and model version, and reviews of task items
give acceptance per model version.

Each one is a typed function of its contract and the repository; ``register``
subscribes them through :func:`common.subscriber.subscribe` (parsing, dead letters with
the reason, log context, metrics), except the predictions (one per item), which
:func:`consume_predictions` counts in batches. Each change is idempotent: replica
intervals merge to the same state in any order and under duplicates, predictions are
counted once per execution, a review once per event id (and a later review of the same
task item replaces the earlier decision, an older one changes nothing). A replica event
naming another project's replica is refused (dead letter), and so is an event PostgreSQL
can never store (a NUL in a text field, a timestamp out of its range: SQLSTATE class 22,
``asyncpg.DataError``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from faststream.rabbit import RabbitBroker

from billing_service.domain.errors import BillingError
from billing_service.repository import Repository
from common.consumer import DUPLICATE, HANDLED, BatchConsumer, Handled
from common.contracts import (
    Contract,
    PredictionCompleted,
    ReplicaStarted,
    ReplicaStopped,
    TaskItemReviewed,
)
from common.envelope import CloudEvent
from common.event_batches import EventBatches
from common.messaging import consumer_queue, events_exchange
from common.observability import ServiceMetrics
from common.service import ServiceRuntime
from common.subscriber import Subscription, subscribe
from common.topology import ANNOTATION, BILLING, MODEL_SERVING, Topology

STALE = Handled("stale")
"""Older than what is stored: changed nothing."""


async def on_replica_started(event: CloudEvent[ReplicaStarted], repo: Repository) -> Handled:
    """Start (or widen) the replica's metered interval and charge its project."""
    await repo.apply_replica_event(event.data, datetime.now(UTC))
    return HANDLED


async def on_replica_stopped(event: CloudEvent[ReplicaStopped], repo: Repository) -> Handled:
    """Close the replica's metered interval and charge its project."""
    await repo.apply_replica_event(event.data, datetime.now(UTC))
    return HANDLED


ON_PREDICTION_COMPLETED = "on_prediction_completed"


async def on_prediction_completed(
    events: Sequence[CloudEvent[PredictionCompleted]], repo: Repository
) -> list[Handled]:
    """Count the predictions for their services and days, once per execution (a batch of
    the queue in one statement: one prediction arrives per item)."""
    counted = await repo.record_predictions([event.data for event in events])
    return [HANDLED if new else DUPLICATE for new in counted]


async def on_task_item_reviewed(event: CloudEvent[TaskItemReviewed], repo: Repository) -> Handled:
    """Keep the latest decision on the task item, credited to the model it reviewed."""
    applied = await repo.record_review(event.id, event.time, event.data)
    if applied is None:
        return DUPLICATE
    return HANDLED if applied else STALE


class Handler(Protocol):
    """A handler of this module: an event and the repository in, its outcome out."""

    __name__: str

    def __call__(self, event: CloudEvent[Any], repo: Repository) -> Awaitable[Handled]: ...


HANDLERS: tuple[tuple[Handler, str, type[Contract]], ...] = (
    (on_replica_started, MODEL_SERVING, ReplicaStarted),
    (on_replica_stopped, MODEL_SERVING, ReplicaStopped),
    (on_task_item_reviewed, ANNOTATION, TaskItemReviewed),
)
"""Each handler with its producer and the one contract its queue is bound to
(:func:`consume_predictions` consumes the predictions in batches)."""


def subscription(
    topology: Topology, handler: Handler, producer: str, contract: type[Contract]
) -> Subscription:
    """Where ``handler`` listens: ``billing.<handler>``, bound to its contract's key."""
    name = handler.__name__
    return Subscription(
        BILLING,
        name,
        consumer_queue(topology, BILLING, name, contract.routing_key),
        events_exchange(topology, producer),
        (contract,),
    )


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    metrics: ServiceMetrics,
    *,
    prefetch: int,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    return [
        subscribe(
            broker,
            topology,
            metrics,
            subscription(topology, handler, producer, contract),
            functools.partial(handler, repo=repo),
            prefetch=prefetch,
            poison=(BillingError, asyncpg.DataError),
        )
        for handler, producer, contract in HANDLERS
    ]


def consume_predictions(
    runtime: ServiceRuntime, repo: Repository, *, prefetch: int, max_batch: int
) -> BatchConsumer:
    """Consume ``billing.on_prediction_completed`` in batches, started and stopped with the
    service; return the consumer. A prediction PostgreSQL can never store is refused."""
    return runtime.consume_in_batches(
        consumer_queue(
            runtime.topology, BILLING, ON_PREDICTION_COMPLETED, PredictionCompleted.routing_key
        ),
        events_exchange(runtime.topology, MODEL_SERVING),
        EventBatches(
            (PredictionCompleted,),
            functools.partial(on_prediction_completed, repo=repo),
            poison=(BillingError, asyncpg.DataError),
        ),
        handler_name=ON_PREDICTION_COMPLETED,
        prefetch=prefetch,
        max_batch=max_batch,
    )
