"""Broker handlers of the billing service: replica events feed the runtime meter,
predictions are counted per service and day."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from faststream.rabbit import Channel, RabbitBroker, RabbitExchange, RabbitQueue

from billing_service.domain import BillingError
from billing_service.repository import Repository
from common.contracts import PredictionCompleted, ReplicaStarted, ReplicaStopped
from common.messaging import (
    PoisonMessageError,
    consumer_queue,
    dead_letter,
    events_exchange,
    parse_event,
    raw_body,
)
from common.observability import ServiceMetrics, log_context
from common.topology import BILLING, MODEL_SERVING, Topology

log = logging.getLogger(__name__)

ON_STARTED = "on_replica_started"
ON_STOPPED = "on_replica_stopped"
ON_PREDICTION = "on_prediction_completed"


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    metrics: ServiceMetrics,
    *,
    prefetch: int,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    exchange = events_exchange(topology, MODEL_SERVING)
    queues = []
    for handler, contract in ((ON_STARTED, ReplicaStarted), (ON_STOPPED, ReplicaStopped)):
        queue = consumer_queue(topology, BILLING, handler, contract.routing_key)
        queues.append(queue.name)
        _replica_subscriber(broker, topology, repo, metrics, queue, exchange, handler, prefetch)

    predictions = consumer_queue(topology, BILLING, ON_PREDICTION, PredictionCompleted.routing_key)
    queues.append(predictions.name)

    @broker.subscriber(
        predictions,
        exchange,
        decoder=raw_body,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )
    async def on_prediction_completed(body: bytes) -> None:
        with metrics.handler_seconds.labels(ON_PREDICTION).time():
            try:
                event = parse_event(body, PredictionCompleted)
                with log_context(event.id, event.correlationid):
                    counted = await repo.record_prediction(event.data)
            except PoisonMessageError as exc:
                await dead_letter(broker, topology, BILLING, predictions.name, body, str(exc))
                metrics.messages.labels(ON_PREDICTION, "dead_lettered").inc()
                return
            except Exception:
                metrics.messages.labels(ON_PREDICTION, "error").inc()
                raise
            metrics.messages.labels(ON_PREDICTION, "ok" if counted else "duplicate").inc()

    return queues


def _replica_subscriber(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    metrics: ServiceMetrics,
    queue: RabbitQueue,
    exchange: RabbitExchange,
    handler: str,
    prefetch: int,
) -> None:
    name = queue.name

    @broker.subscriber(
        queue,
        exchange,
        decoder=raw_body,
        retry=True,
        channel=Channel(prefetch_count=prefetch),
    )
    async def on_replica_event(body: bytes) -> None:
        with metrics.handler_seconds.labels(handler).time():
            try:
                event = parse_event(body, ReplicaStarted, ReplicaStopped)
                data = event.data
                assert isinstance(data, ReplicaStarted | ReplicaStopped)
                with log_context(event.id, event.correlationid):
                    await repo.apply_replica_event(data, datetime.now(UTC))
            except (PoisonMessageError, BillingError) as exc:
                reason = exc.message if isinstance(exc, BillingError) else str(exc)
                await dead_letter(broker, topology, BILLING, name, body, reason)
                metrics.messages.labels(handler, "dead_lettered").inc()
                return
            except Exception:
                metrics.messages.labels(handler, "error").inc()
                raise
            metrics.messages.labels(handler, "ok").inc()
