"""Broker handlers of the trigger-router besides item events (see
``adapters.item_events``): prediction outcomes, replicas and model services from
model-serving, budgets from billing.

Each one is a typed function of its contracts and the repository; ``register``
subscribes them through :func:`common.subscriber.subscribe` (parsing, dead letters with
the reason, log context, metrics). Each applies an idempotent change (natural keys and
event-time guards, so redeliveries and reordering change nothing twice) and raises on
transient errors (requeued until the delivery limit dead-letters the message).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from faststream.rabbit import RabbitBroker

from common.consumer import DUPLICATE, HANDLED, Handled
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
    TaskItemAdded,
)
from common.envelope import CloudEvent
from common.messaging import consumer_queue, events_exchange
from common.observability import ServiceMetrics
from common.subscriber import Subscription, subscribe
from common.topology import ANNOTATION, BILLING, MODEL_SERVING, TRIGGER_ROUTER, Topology
from trigger_router_service import metrics
from trigger_router_service.repository import Repository
from trigger_router_service.usecases.pipelines import PipelineEngine

log = logging.getLogger(__name__)

STALE = Handled("stale")
"""Older than what is stored: changed nothing."""


async def on_prediction_outcome(
    event: CloudEvent[PredictionCompleted | PredictionFailed],
    repo: Repository,
    pipelines: PipelineEngine | None = None,
) -> Handled:
    """Close the execution as ``success`` or ``failed``; a pipeline's predict node moves on.

    The pipeline step runs even when the execution was already closed: a redelivery after
    a crash between the two transactions still moves the pipeline (the step is idempotent).
    """
    data = event.data
    engine = pipelines or PipelineEngine(repo)
    if isinstance(data, PredictionCompleted):
        changed, cold = await repo.prediction_completed(data)
        if cold is not None:
            metrics.COLD_START.observe(cold)
        if changed:
            metrics.EXECUTIONS.labels("success").inc()
        if data.origin is None or data.origin.way == "pipeline":
            changed = await engine.prediction_completed(data) or changed
        return HANDLED if changed else DUPLICATE
    changed = await repo.prediction_failed(data, event.time)
    if changed:
        metrics.EXECUTIONS.labels("failed").inc()
    changed = await engine.prediction_failed(data) or changed
    return HANDLED if changed else DUPLICATE


async def on_task_item_added(
    event: CloudEvent[TaskItemAdded], repo: Repository, pipelines: PipelineEngine | None = None
) -> Handled:
    """A pipeline's task node is done once the annotation service added the item."""
    engine = pipelines or PipelineEngine(repo)
    return HANDLED if await engine.task_item_added(event.data) else DUPLICATE


async def on_replica_event(
    event: CloudEvent[ReplicaStarted | ReplicaStopped], repo: Repository
) -> Handled:
    """Record a replica started or stopped."""
    data = event.data
    if isinstance(data, ReplicaStarted):
        seconds = await repo.replica_started(data, event.time)
        if seconds is not None:
            metrics.REPLICA_START.observe(seconds)
        return HANDLED
    return HANDLED if await repo.replica_stopped(data) else DUPLICATE


async def on_service_event(
    event: CloudEvent[ServiceDeployed | ServiceUndeployed], repo: Repository
) -> Handled:
    """Store a service's settings, or mark it undeployed (its triggers fail, its
    unfinished executions are cancelled)."""
    data = event.data
    if isinstance(data, ServiceDeployed):
        return HANDLED if await repo.service_deployed(data, event.time) else STALE
    applied, failed, cancelled = await repo.service_undeployed(
        data.service_id, data.project_id, event.time
    )
    if failed:
        metrics.TRIGGERS_FAILED.inc(failed)
    if cancelled:
        metrics.EXECUTIONS.labels("cancelled").inc(cancelled)
    log.info(
        "model service undeployed",
        extra={"service_id": data.service_id, "triggers_failed": failed, "cancelled": cancelled},
    )
    return HANDLED if applied else STALE


async def on_budget_event(
    event: CloudEvent[BudgetExhausted | BudgetRestored], repo: Repository
) -> Handled:
    """Hold the project's predict requests while its budget is exhausted; release them."""
    data = event.data
    exhausted = isinstance(data, BudgetExhausted)
    applied, waiting, released = await repo.budget_changed(data.project_id, exhausted, event.time)
    if waiting:
        metrics.EXECUTIONS.labels("waiting-for-budget").inc(waiting)
    if released is not None:
        metrics.EXECUTIONS.labels("queued").inc(released.published + released.requeued)
        metrics.PREDICT_REQUESTS.labels("budget-restored").inc(released.published)
    log.info(
        "budget exhausted" if exhausted else "budget restored",
        extra={"project_id": data.project_id, "applied": applied},
    )
    return HANDLED if applied else STALE


class Handler(Protocol):
    """A handler of this module: an event and the repository in, its outcome out."""

    __name__: str

    def __call__(self, event: CloudEvent[Any], repo: Repository) -> Awaitable[Handled]: ...


HANDLERS: tuple[tuple[Handler, str, str, tuple[type[Contract], ...]], ...] = (
    (
        on_prediction_outcome,
        MODEL_SERVING,
        "prediction.*.v1",
        (PredictionCompleted, PredictionFailed),
    ),
    (on_replica_event, MODEL_SERVING, "replica.*.v1", (ReplicaStarted, ReplicaStopped)),
    (on_service_event, MODEL_SERVING, "service.*.v1", (ServiceDeployed, ServiceUndeployed)),
    (on_budget_event, BILLING, "budget.*.v1", (BudgetExhausted, BudgetRestored)),
    (on_task_item_added, ANNOTATION, "task_item.added.v1", (TaskItemAdded,)),
)
"""Each handler with its producer, its binding and the contracts its queue carries."""

PIPELINE_HANDLERS: tuple[Handler, ...] = (on_prediction_outcome, on_task_item_added)
"""Handlers that move pipeline executions (given the service's pipeline engine)."""


def subscription(
    topology: Topology,
    handler: Handler,
    producer: str,
    pattern: str,
    contracts: tuple[type[Contract], ...],
) -> Subscription:
    """Where ``handler`` listens: one queue per event family, bound to its v1 keys (a later
    v2 published beside v1 is not delivered here, an unknown v1 type is dead-lettered)."""
    name = handler.__name__
    return Subscription(
        TRIGGER_ROUTER,
        name,
        consumer_queue(topology, TRIGGER_ROUTER, name, pattern),
        events_exchange(topology, producer),
        contracts,
    )


def register(
    broker: RabbitBroker,
    topology: Topology,
    repo: Repository,
    service_metrics: ServiceMetrics,
    *,
    prefetch: int,
    pipelines: PipelineEngine | None = None,
) -> list[str]:
    """Subscribe the handlers; return their queue names."""
    engine = pipelines or PipelineEngine(repo)
    return [
        subscribe(
            broker,
            topology,
            service_metrics,
            subscription(topology, handler, producer, pattern, contracts),
            functools.partial(
                cast("Callable[..., Awaitable[Handled]]", handler), repo=repo, pipelines=engine
            )
            if handler in PIPELINE_HANDLERS
            else functools.partial(handler, repo=repo),
            prefetch=prefetch,
        )
        for handler, producer, pattern, contracts in HANDLERS
    ]
