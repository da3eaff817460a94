"""Broker handlers of the model-serving service (the HTTP API process; predict workers
consume their work queues themselves, see :mod:`model_serving_service.worker`).

``execution.cancelled.v1`` from the trigger-router is recorded in
``cancelled_executions``: a worker skips every request of that execution, up to the
cancelled attempt, that it has not started on yet (see :class:`~.worker.intake.Intake`).
Subscribed through :func:`common.subscriber.subscribe` (parsing, dead letters with the
reason, delayed retries, metrics); idempotent on the execution id.
"""

from __future__ import annotations

import functools

from faststream.rabbit import RabbitBroker

from common.consumer import DUPLICATE, HANDLED, Handled
from common.contracts import ExecutionCancelled
from common.envelope import CloudEvent
from common.messaging import consumer_queue, events_exchange
from common.observability import ServiceMetrics
from common.subscriber import Subscription, subscribe
from common.topology import MODEL_SERVING, TRIGGER_ROUTER, Topology
from model_serving_service.repository import Repository

ON_EXECUTION_CANCELLED = "on_execution_cancelled"


async def on_execution_cancelled(
    event: CloudEvent[ExecutionCancelled], repo: Repository, retention_seconds: float
) -> Handled:
    """Remember the cancelled execution so that workers skip its requests (a redelivery,
    or a cancel of an earlier attempt than the one remembered, changes nothing)."""
    changed = await repo.record_cancel(event.data, retention_seconds)
    return HANDLED if changed else DUPLICATE


def subscription(topology: Topology) -> Subscription:
    """Where :func:`on_execution_cancelled` listens: the router's events, one key."""
    return Subscription(
        MODEL_SERVING,
        ON_EXECUTION_CANCELLED,
        consumer_queue(
            topology, MODEL_SERVING, ON_EXECUTION_CANCELLED, ExecutionCancelled.routing_key
        ),
        events_exchange(topology, TRIGGER_ROUTER),
        (ExecutionCancelled,),
    )


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    service_metrics: ServiceMetrics,
    *,
    prefetch: int,
    retention_seconds: float,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    return [
        subscribe(
            broker,
            topology,
            service_metrics,
            subscription(topology),
            functools.partial(
                on_execution_cancelled, repo=repo, retention_seconds=retention_seconds
            ),
            prefetch=prefetch,
        )
    ]
