"""Broker handlers of the annotation service: predictions become annotations; item
events keep the item facts exports need (file name, width, height)."""

from __future__ import annotations

import logging

from faststream.rabbit import Channel

from annotation_service.ingest import PredictionIngest
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
from common.observability import log_context
from common.service import ServiceRuntime
from common.topology import ANNOTATION, DATASET, MODEL_SERVING

log = logging.getLogger(__name__)

ON_PREDICTION = "on_prediction_completed"
ON_ITEM = "on_item_event"
ITEM_EVENTS = (ItemCreated, ItemUpdated, ItemMetadataUpdated, ItemDeleted)


def register(
    runtime: ServiceRuntime,
    repo: Repository,
    *,
    prefetch: int,
    batch_max: int,
    writers: int,
) -> list[str]:
    """Subscribe the handlers; return their queue names.

    Predictions arrive by the thousand and are stored in batches, so their queue is
    consumed by a :class:`common.consumer.BatchConsumer`; item events by a FastStream
    subscriber.
    """
    broker, topology, metrics = runtime.broker, runtime.topology, runtime.metrics
    predictions = consumer_queue(
        topology, ANNOTATION, ON_PREDICTION, PredictionCompleted.routing_key
    )
    runtime.consume_in_batches(
        predictions,
        events_exchange(topology, MODEL_SERVING),
        PredictionIngest(repo.ingest),
        handler_name=ON_PREDICTION,
        prefetch=prefetch,
        max_batch=batch_max,
        writers=writers,
    )
    # One queue for every v1 item event: each carries the full item snapshot.
    items = consumer_queue(topology, ANNOTATION, ON_ITEM, "item.*.v1")

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
