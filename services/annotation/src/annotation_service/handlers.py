"""Broker handlers of the annotation service: predictions become annotations; item
events keep the item facts exports need (file name, width, height)."""

from __future__ import annotations

import logging
from functools import cache

from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import Counter

from annotation_service.domain import AnnotationError
from annotation_service.ingest import IngestBatcher
from annotation_service.repository import Repository
from common.contracts import (
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemUpdated,
    PredictionCompleted,
)
from common.messaging import (
    PoisonMessageError,
    consumer_queue,
    dead_letter,
    events_exchange,
    parse_event,
    raw_body,
)
from common.observability import ServiceMetrics, log_context, metric_name
from common.topology import ANNOTATION, DATASET, MODEL_SERVING, Topology

log = logging.getLogger(__name__)

ON_PREDICTION = "on_prediction_completed"
ON_ITEM = "on_item_event"
ITEM_EVENTS = (ItemCreated, ItemUpdated, ItemMetadataUpdated, ItemDeleted)


@cache
def annotations_stored() -> Counter:
    """Annotations written from predictions (redeliveries add nothing)."""
    return Counter(
        metric_name(ANNOTATION, "annotations_stored_total"),
        "Model annotations stored from prediction.completed.v1.",
    )


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    batcher: IngestBatcher,
    metrics: ServiceMetrics,
    *,
    prefetch: int,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    predictions = consumer_queue(
        topology, ANNOTATION, ON_PREDICTION, PredictionCompleted.routing_key
    )
    # One queue for every v1 item event: each carries the full item snapshot.
    items = consumer_queue(topology, ANNOTATION, ON_ITEM, "item.*.v1")

    @broker.subscriber(
        predictions,
        events_exchange(topology, MODEL_SERVING),
        decoder=raw_body,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )
    async def on_prediction_completed(body: bytes) -> None:
        with metrics.handler_seconds.labels(ON_PREDICTION).time():
            try:
                event = parse_event(body, PredictionCompleted)
                with log_context(event.id, event.correlationid):
                    result = await batcher.submit(event)
            except (PoisonMessageError, AnnotationError) as exc:
                reason = exc.message if isinstance(exc, AnnotationError) else str(exc)
                await dead_letter(broker, topology, ANNOTATION, predictions.name, body, reason)
                metrics.messages.labels(ON_PREDICTION, "dead_lettered").inc()
                return
            except Exception:
                metrics.messages.labels(ON_PREDICTION, "error").inc()
                raise
            annotations_stored().inc(result.stored)
            duplicate = result.stored == 0 and len(event.data.annotations) > 0
            metrics.messages.labels(ON_PREDICTION, "duplicate" if duplicate else "ok").inc()

    @broker.subscriber(
        items,
        events_exchange(topology, DATASET),
        decoder=raw_body,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )
    async def on_item_event(body: bytes) -> None:
        with metrics.handler_seconds.labels(ON_ITEM).time():
            try:
                event = parse_event(body, *ITEM_EVENTS)
                with log_context(event.id, event.correlationid):
                    data = event.data
                    assert isinstance(data, ITEM_EVENTS)
                    await repo.upsert_item(data.item, deleted=isinstance(data, ItemDeleted))
            except PoisonMessageError as exc:
                await dead_letter(broker, topology, ANNOTATION, items.name, body, str(exc))
                metrics.messages.labels(ON_ITEM, "dead_lettered").inc()
                return
            except Exception:
                metrics.messages.labels(ON_ITEM, "error").inc()
                raise
            metrics.messages.labels(ON_ITEM, "ok").inc()

    return [predictions.name, items.name]
