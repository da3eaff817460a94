"""Broker handlers of the annotation service: predictions become annotations; item
events keep the item facts exports need (file name, width, height); a pipeline's
``add_task_item.v1`` puts an item into a task; ``execution.cancelled.v1`` from the router
keeps a cancelled execution's prediction out (:mod:`annotation_service.usecases.cancels`).

Predictions arrive by the thousand and are stored in batches, so their queue is consumed
by a :class:`common.consumer.BatchConsumer` (:func:`consume_predictions`), and so are the
item events, one per upload (:func:`consume_item_events`); the other handlers are typed
functions of their contracts and the repository, subscribed through
:func:`common.subscriber.subscribe` by :func:`register` (parsing, dead letters with the
reason, log context, metrics).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import asyncpg
from faststream.rabbit import RabbitBroker, RabbitExchange

from annotation_service.domain import AnnotationError
from annotation_service.repository import Repository
from annotation_service.usecases.cancels import cancel_execution
from annotation_service.usecases.ingest import PredictionIngest, store_predictions
from annotation_service.usecases.tasks import add_task_item
from common.consumer import DUPLICATE, HANDLED, Handled
from common.contracts import (
    AddTaskItem,
    ExecutionCancelled,
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemUpdated,
    PredictionCompleted,
)
from common.envelope import CloudEvent
from common.event_batches import EventBatches
from common.messaging import commands_exchange, consumer_queue, events_exchange
from common.observability import ServiceMetrics
from common.service import ServiceRuntime
from common.subscriber import Subscription, subscribe
from common.topology import ANNOTATION, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology

log = logging.getLogger(__name__)

ON_PREDICTION = "on_prediction_completed"
DEFAULT_CANCEL_RETENTION_SECONDS = 14 * 24 * 3600.0
ITEM_EVENTS = (ItemCreated, ItemUpdated, ItemMetadataUpdated, ItemDeleted)


ON_ITEM_EVENT = "on_item_event"


async def on_item_event(
    events: Sequence[CloudEvent[ItemCreated | ItemUpdated | ItemMetadataUpdated | ItemDeleted]],
    repo: Repository,
) -> list[Handled]:
    """Keep the items' facts (a newer snapshot wins; a deletion is final): a batch of the
    queue in one statement (one event arrives per upload)."""
    await repo.upsert_items([(e.data.item, isinstance(e.data, ItemDeleted)) for e in events])
    return [HANDLED] * len(events)


async def on_add_task_item(event: CloudEvent[AddTaskItem], repo: Repository) -> Handled:
    """Put a pipeline's item into its task with the prediction's annotations."""
    return await add_task_item(repo, event)


async def on_execution_cancelled(
    event: CloudEvent[ExecutionCancelled],
    repo: Repository,
    retention_seconds: float = DEFAULT_CANCEL_RETENTION_SECONDS,
) -> Handled:
    """Keep a cancelled execution's prediction out: remember the cancel, take back what it
    already stored unless a person reviewed it (see :mod:`~.usecases.cancels`)."""
    new, discarded = await cancel_execution(repo, event.data, retention_seconds)
    return HANDLED if new or discarded.annotations or discarded.task_items else DUPLICATE


class Handler(Protocol):
    """A handler of this module: an event and the repository in, its outcome out."""

    __name__: str

    def __call__(self, event: CloudEvent[Any], repo: Repository) -> Awaitable[Handled]: ...


def _subscriptions(topology: Topology) -> list[tuple[Handler, Subscription]]:
    return [
        (
            on_add_task_item,
            Subscription(
                ANNOTATION,
                "on_add_task_item",
                consumer_queue(topology, ANNOTATION, "on_add_task_item", AddTaskItem.routing_key),
                commands_exchange(topology, ANNOTATION),
                (AddTaskItem,),
            ),
        ),
        (
            on_execution_cancelled,
            Subscription(
                ANNOTATION,
                "on_execution_cancelled",
                consumer_queue(
                    topology,
                    ANNOTATION,
                    "on_execution_cancelled",
                    ExecutionCancelled.routing_key,
                ),
                events_exchange(topology, TRIGGER_ROUTER),
                (ExecutionCancelled,),
            ),
        ),
    ]


def exchanges(topology: Topology) -> list[RabbitExchange]:
    """The exchanges the handlers' queues are bound to."""
    return [s.exchange for _, s in _subscriptions(topology)] + [
        events_exchange(topology, MODEL_SERVING),
        events_exchange(topology, DATASET),
    ]


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    service_metrics: ServiceMetrics,
    *,
    prefetch: int,
    cancel_retention_seconds: float = DEFAULT_CANCEL_RETENTION_SECONDS,
) -> list[str]:
    """Subscribe the typed handlers; return their queue names."""

    def bound(handler: Handler) -> Any:
        if handler is on_execution_cancelled:
            return functools.partial(
                on_execution_cancelled, repo=repo, retention_seconds=cancel_retention_seconds
            )
        return functools.partial(handler, repo=repo)

    return [
        subscribe(
            broker,
            topology,
            service_metrics,
            sub,
            bound(handler),
            prefetch=prefetch,
            poison=(AnnotationError,),
        )
        for handler, sub in _subscriptions(topology)
    ]


def consume_predictions(
    runtime: ServiceRuntime, repo: Repository, *, prefetch: int, batch_max: int, writers: int
) -> str:
    """Consume ``prediction.completed.v1`` in batches (one of the service's consumer
    queues); return the queue's name."""
    predictions = consumer_queue(
        runtime.topology, ANNOTATION, ON_PREDICTION, PredictionCompleted.routing_key
    )
    runtime.consume_in_batches(
        predictions,
        events_exchange(runtime.topology, MODEL_SERVING),
        PredictionIngest(functools.partial(store_predictions, repo)),
        handler_name=ON_PREDICTION,
        prefetch=prefetch,
        max_batch=batch_max,
        writers=writers,
    )
    return predictions.name


def consume_item_events(
    runtime: ServiceRuntime, repo: Repository, *, prefetch: int, batch_max: int
) -> str:
    """Consume ``annotation.on_item_event`` (every v1 item event: each carries the full
    item snapshot) in batches; return the queue's name. An event PostgreSQL can never
    store (a NUL in a name) is refused."""
    queue = consumer_queue(runtime.topology, ANNOTATION, ON_ITEM_EVENT, "item.*.v1")
    runtime.consume_in_batches(
        queue,
        events_exchange(runtime.topology, DATASET),
        EventBatches(
            ITEM_EVENTS,
            functools.partial(on_item_event, repo=repo),
            poison=(AnnotationError, asyncpg.DataError),
        ),
        handler_name=ON_ITEM_EVENT,
        prefetch=prefetch,
        max_batch=batch_max,
    )
    return queue.name
