"""Broker handlers of the trigger-router besides item events (see ``routing``):
prediction outcomes, replicas and model services from model-serving, budgets from billing.

Each one parses with ``parse_event`` (poison is dead-lettered with the reason),
applies an idempotent change (natural keys and event-time guards, so redeliveries
and reordering change nothing twice) and raises on transient errors (requeued until
the delivery limit dead-letters the message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.rabbit import Channel, RabbitBroker

from common.contracts import (
    BudgetExhausted,
    BudgetRestored,
    Contract,
    PredictionCompleted,
    PredictionFailed,
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceUndeployed,
)
from common.envelope import CloudEvent
from common.messaging import (
    PoisonMessageError,
    consumer_queue,
    dead_letter,
    events_exchange,
    parse_event,
    raw_body,
)
from common.observability import ServiceMetrics, log_context
from common.topology import BILLING, MODEL_SERVING, TRIGGER_ROUTER, Topology
from trigger_router_service import metrics
from trigger_router_service.repository import Repository

log = logging.getLogger(__name__)

Effect = Callable[[CloudEvent[Any]], Awaitable[str]]
"""Applies one event; returns the outcome label (ok, duplicate, ignored ...)."""


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    service_metrics: ServiceMetrics,
    *,
    prefetch: int,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    queues: list[str] = []

    def subscribe(
        handler: str,
        producer: str,
        pattern: str,
        contracts: tuple[type[Contract], ...],
        effect: Effect,
    ) -> None:
        # One queue per event family, bound to its v1 keys: a later v2 published beside
        # v1 is not delivered here, an unknown v1 type is dead-lettered with the reason.
        queue = consumer_queue(topology, TRIGGER_ROUTER, handler, pattern)
        queues.append(queue.name)

        async def consume(body: bytes) -> None:
            with service_metrics.handler_seconds.labels(handler).time():
                try:
                    event = parse_event(body, *contracts)
                    with log_context(event.id, event.correlationid):
                        outcome = await effect(event)
                except PoisonMessageError as exc:
                    await dead_letter(broker, topology, TRIGGER_ROUTER, queue.name, body, str(exc))
                    service_metrics.messages.labels(handler, "dead_lettered").inc()
                    return
                except Exception:
                    service_metrics.messages.labels(handler, "error").inc()
                    raise
                service_metrics.messages.labels(handler, outcome).inc()

        consume.__name__ = handler
        broker.subscriber(
            queue,
            events_exchange(topology, producer),
            decoder=raw_body,
            retry=True,
            channel=Channel(prefetch_count=prefetch),
        )(consume)

    # ---------------------------------------------------------------- predictions

    async def on_prediction(event: CloudEvent[Any]) -> str:
        data = event.data
        if isinstance(data, PredictionCompleted):
            changed, cold = await repo.prediction_completed(data)
            if cold is not None:
                metrics.COLD_START.observe(cold)
            if changed:
                metrics.EXECUTIONS.labels("success").inc()
            return "ok" if changed else "duplicate"
        assert isinstance(data, PredictionFailed)
        changed = await repo.prediction_failed(data, event.time)
        if changed:
            metrics.EXECUTIONS.labels("failed").inc()
        return "ok" if changed else "duplicate"

    subscribe(
        "on_prediction_outcome",
        MODEL_SERVING,
        "prediction.*.v1",
        (PredictionCompleted, PredictionFailed),
        on_prediction,
    )

    # ---------------------------------------------------------------- replicas

    async def on_replica(event: CloudEvent[Any]) -> str:
        data = event.data
        if isinstance(data, ReplicaStarted):
            seconds = await repo.replica_started(data, event.time)
            if seconds is not None:
                metrics.REPLICA_START.observe(seconds)
            return "ok"
        assert isinstance(data, ReplicaStopped)
        return "ok" if await repo.replica_stopped(data) else "duplicate"

    subscribe(
        "on_replica_event",
        MODEL_SERVING,
        "replica.*.v1",
        (ReplicaStarted, ReplicaStopped),
        on_replica,
    )

    # ---------------------------------------------------------------- model services

    async def on_service(event: CloudEvent[Any]) -> str:
        data = event.data
        if isinstance(data, ServiceDeployed):
            return "ok" if await repo.service_deployed(data, event.time) else "stale"
        assert isinstance(data, ServiceUndeployed)
        applied, failed, cancelled = await repo.service_undeployed(
            data.service_id, data.project_id, event.time
        )
        if failed:
            metrics.TRIGGERS_FAILED.inc(failed)
        if cancelled:
            metrics.EXECUTIONS.labels("cancelled").inc(cancelled)
        log.info(
            "model service undeployed",
            extra={
                "service_id": data.service_id,
                "triggers_failed": failed,
                "cancelled": cancelled,
            },
        )
        return "ok" if applied else "stale"

    subscribe(
        "on_service_event",
        MODEL_SERVING,
        "service.*.v1",
        (ServiceDeployed, ServiceUndeployed),
        on_service,
    )

    # ---------------------------------------------------------------- budgets

    async def on_budget(event: CloudEvent[Any]) -> str:
        data = event.data
        exhausted = isinstance(data, BudgetExhausted)
        applied, waiting, released = await repo.budget_changed(
            data.project_id, exhausted, event.time
        )
        if waiting:
            metrics.EXECUTIONS.labels("waiting-for-budget").inc(waiting)
        if released is not None:
            metrics.EXECUTIONS.labels("queued").inc(released.published + released.requeued)
            metrics.PREDICT_REQUESTS.labels("budget-restored").inc(released.published)
        log.info(
            "budget exhausted" if exhausted else "budget restored",
            extra={"project_id": data.project_id, "applied": applied},
        )
        return "ok" if applied else "stale"

    subscribe(
        "on_budget_event", BILLING, "budget.*.v1", (BudgetExhausted, BudgetRestored), on_budget
    )
    return queues
