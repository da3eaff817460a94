"""Broker handlers of the dataset service: ``ingest_item.v1`` from upload clients."""

from __future__ import annotations

import logging

from faststream.rabbit import Channel, RabbitBroker

from common.contracts import IngestItem
from common.messaging import (
    PoisonMessageError,
    commands_exchange,
    consumer_queue,
    dead_letter,
    parse_event,
    raw_body,
)
from common.observability import ServiceMetrics, log_context
from common.topology import DATASET, Topology
from dataset_service.domain import DatasetError, parse_user_metadata
from dataset_service.usecases import ItemStore

log = logging.getLogger(__name__)

HANDLER = "on_ingest_item"


def register(
    broker: RabbitBroker,
    topology: Topology,
    store: ItemStore,
    metrics: ServiceMetrics,
    *,
    prefetch: int,
) -> str:
    """Subscribe the ingest handler; return its queue name."""
    queue = consumer_queue(topology, DATASET, HANDLER, IngestItem.routing_key)

    @broker.subscriber(
        queue,
        commands_exchange(topology, DATASET),
        decoder=raw_body,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )
    async def on_ingest_item(body: bytes) -> None:
        with metrics.handler_seconds.labels(HANDLER).time():
            try:
                event = parse_event(body, IngestItem)
                with log_context(event.id, event.correlationid):
                    command = event.data
                    _, created = await store.ingest(
                        dataset_id=command.dataset_id,
                        s3_key=command.s3_key,
                        name=command.name,
                        directory=command.dir,
                        user_metadata=parse_user_metadata(command.metadata),
                        origin_id=f"ingest:{event.id}",
                    )
            except (PoisonMessageError, DatasetError) as exc:
                reason = exc.message if isinstance(exc, DatasetError) else str(exc)
                await dead_letter(broker, topology, DATASET, queue.name, body, reason)
                metrics.messages.labels(HANDLER, "dead_lettered").inc()
                return
            except Exception:
                metrics.messages.labels(HANDLER, "error").inc()
                raise
            metrics.messages.labels(HANDLER, "ok" if created else "duplicate").inc()

    return queue.name
