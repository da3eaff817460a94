"""Broker handlers of the trigger-router.

Item events, the router's hot path (every upload, every metadata change), are consumed
in batches by :class:`common.consumer.BatchConsumer` (:func:`consume_item_events`): the
handler :class:`ItemEvents` routes a batch in one transaction, each event alone when the
batch fails. Prediction outcomes (one per item) are consumed in batches too
(:func:`consume_prediction_outcomes`: trigger and batch successes close in one statement,
the rest one by one). The others (replicas and model services from model-serving, budgets
from billing, task items from annotation) are typed functions of their contracts and the
repository; ``register`` subscribes them through
:func:`common.subscriber.subscribe` (parsing, dead letters with the reason, log context,
metrics). Each applies an idempotent change (natural keys and event-time guards, so
redeliveries and reordering change nothing twice) and raises on transient errors
(retried after a delay, then dead-lettered with the last error).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import asyncpg
from faststream.rabbit import RabbitBroker

from common.batching import together_or_alone
from common.consumer import DUPLICATE, HANDLED, BatchConsumer, DeadLetter, Handled, Outcome, Retry
from common.contracts import (
    BudgetExhausted,
    BudgetRestored,
    Contract,
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemUpdated,
    PredictionCompleted,
    PredictionFailed,
    PredictionStarted,
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceUndeployed,
    TaskItemAdded,
)
from common.dql import Condition
from common.envelope import CloudEvent
from common.event_batches import EventBatches
from common.messaging import PoisonMessageError, consumer_queue, events_exchange, parse_event
from common.observability import ServiceMetrics, log_context
from common.service import ServiceRuntime
from common.subscriber import Subscription, subscribe
from common.topology import (
    ANNOTATION,
    BILLING,
    DATASET,
    MODEL_SERVING,
    TRIGGER_ROUTER,
    Topology,
)
from trigger_router_service import metrics
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import ExecutionStatus
from trigger_router_service.domain.routing import ItemEvent, RouteOutcome, item_event
from trigger_router_service.domain.triggers import ACTION_BY_ROUTING_KEY, ActiveTrigger
from trigger_router_service.repository import Repository
from trigger_router_service.usecases.pipelines import PipelineEngine
from trigger_router_service.usecases.routing import ItemRouting

log = logging.getLogger(__name__)

STALE = Handled("stale")
"""Older than what is stored: changed nothing."""

ON_ITEM_EVENT = "on_item_event"
ITEM_CONTRACTS = (ItemCreated, ItemUpdated, ItemMetadataUpdated, ItemDeleted)


def _count_mismatch(_trigger: ActiveTrigger, _cond: Condition, _value: Any) -> None:
    metrics.FILTER_MISMATCHES.inc()


class ItemEvents:
    """The batch handler of ``trigger_router.on_item_event``: bodies in, one outcome each.

    Poison (bad JSON, unknown version, missing fields, not an item event) is
    dead-lettered with the reason; the rest are routed in one transaction, or each alone
    when the batch fails, so that only an event at fault is retried (after a delay, then
    dead-lettered with its last error). An event PostgreSQL can never store (a NUL
    character) is poison too.
    """

    def __init__(self, routing: ItemRouting, *, inline_blob_max_bytes: int = 0) -> None:
        self._routing = routing
        self._inline_blob_max_bytes = inline_blob_max_bytes

    async def __call__(self, bodies: Sequence[bytes]) -> list[Outcome]:
        outcomes: list[Outcome] = [HANDLED] * len(bodies)
        parsed: list[tuple[int, ItemEvent]] = []
        for index, body in enumerate(bodies):
            try:
                envelope = parse_event(body, *ITEM_CONTRACTS)
                parsed.append((index, item_event(envelope, self._inline_blob_max_bytes)))
            except PoisonMessageError as exc:
                outcomes[index] = DeadLetter(str(exc))
            except RouterError as exc:
                outcomes[index] = DeadLetter(exc.message)
        results = await together_or_alone([event for _, event in parsed], self._route)
        for (index, event), result in zip(parsed, results, strict=True):
            if not isinstance(result, Exception):
                outcomes[index] = result
                continue
            with log_context(event.event_id):
                log.warning("routing an item event failed", exc_info=result)
            reason = f"{type(result).__name__}: {result}"
            poison = isinstance(result, asyncpg.DataError)
            outcomes[index] = DeadLetter(reason) if poison else Retry(reason)
        return outcomes

    async def _route(self, events: Sequence[ItemEvent]) -> list[Handled]:
        outcome = await self._routing.route(events, on_mismatch=_count_mismatch)
        _record(outcome, events)
        return [DUPLICATE if e.event_id in outcome.duplicates else HANDLED for e in events]


def _record(outcome: RouteOutcome, events: Sequence[ItemEvent]) -> None:
    now = datetime.now(UTC)
    for event in events:
        if event.event_id in outcome.duplicates:
            result = "duplicate"
        else:
            result = "matched" if event.event_id in outcome.matched_events else "unmatched"
            metrics.ROUTING_LATENCY.observe(max((now - event.time).total_seconds(), 0.0))
        metrics.EVENTS_ROUTED.labels(event.action.value, result).inc()
    for status, count in outcome.created.items():
        metrics.EXECUTIONS.labels(status.value).inc(count)
    queued = outcome.created.get(ExecutionStatus.QUEUED, 0)
    if queued:
        metrics.PREDICT_REQUESTS.labels("routed").inc(queued)
    if outcome.failed_triggers:
        metrics.TRIGGERS_FAILED.inc(len(outcome.failed_triggers))
        log.warning(
            "triggers failed: their model service is gone",
            extra={"trigger_ids": outcome.failed_triggers},
        )


def consume_item_events(
    runtime: ServiceRuntime,
    routing: ItemRouting,
    *,
    prefetch: int,
    max_batch: int,
    inline_blob_max_bytes: int = 0,
) -> BatchConsumer:
    """Consume ``trigger_router.on_item_event`` (bound to the four item event keys) in
    batches, started and stopped with the service; return the consumer. Inline blobs of
    ``item.created.v1`` at most ``inline_blob_max_bytes`` go on into predict requests."""
    keys = tuple(ACTION_BY_ROUTING_KEY)
    return runtime.consume_in_batches(
        consumer_queue(runtime.topology, TRIGGER_ROUTER, ON_ITEM_EVENT, keys[0]),
        events_exchange(runtime.topology, DATASET),
        ItemEvents(routing, inline_blob_max_bytes=inline_blob_max_bytes),
        handler_name=ON_ITEM_EVENT,
        prefetch=prefetch,
        max_batch=max_batch,
        bindings=keys,
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How retryable prediction failures are run again (settings ``prediction_*``)."""

    max_attempts: int = 3
    base_seconds: float = 5.0
    max_seconds: float = 300.0


RETRIED_LATER = Handled("retried_later")
"""A retryable failure: the execution's next attempt is scheduled."""


async def on_prediction_outcome(
    event: CloudEvent[PredictionStarted | PredictionCompleted | PredictionFailed],
    repo: Repository,
    pipelines: PipelineEngine | None = None,
    retry: RetryPolicy | None = None,
) -> Handled:
    """Close the execution as ``success`` or ``failed``; a pipeline's predict node moves on.
    A retryable failure with attempts left schedules the next attempt instead (backoff).
    ``prediction.started.v1`` (same queue: ``prediction.*.v1``) marks the batch's
    executions ``in-progress`` (:func:`prediction_started`).

    The ledger's update and the pipeline's step share one transaction; the step runs even
    when the execution was already closed (it is idempotent: a redelivery changes nothing).
    """
    data = event.data
    if isinstance(data, PredictionStarted):
        return await prediction_started(data, repo)
    engine = pipelines or PipelineEngine(repo)
    if isinstance(data, PredictionCompleted):
        # One transaction: the ledger's success and the pipeline's next step commit together.
        async with repo.transaction() as conn:
            changed, cold = await repo.prediction_completed(data, conn)
            moved = False
            if data.origin is None or data.origin.way == "pipeline":
                moved = await engine.prediction_completed(data, conn)
        if cold is not None:
            metrics.COLD_START.observe(cold)
        if changed:
            metrics.EXECUTIONS.labels("success").inc()
        return HANDLED if changed or moved else DUPLICATE
    policy = retry or RetryPolicy()
    if await repo.retry_prediction(
        data, policy.max_attempts, policy.base_seconds, policy.max_seconds
    ):
        metrics.PREDICT_REQUESTS.labels("retry-scheduled").inc()
        return RETRIED_LATER
    changed = await repo.prediction_failed(data, event.time)
    if changed:
        metrics.EXECUTIONS.labels("failed").inc()
    changed = await engine.prediction_failed(data) or changed
    return HANDLED if changed else DUPLICATE


def _closes_alone(data: Contract) -> bool:
    """A success of a trigger's or a batch's execution: nothing follows it in a pipeline."""
    return (
        isinstance(data, PredictionCompleted)
        and data.origin is not None
        and data.origin.way != "pipeline"
    )


async def on_prediction_outcomes(
    events: Sequence[CloudEvent[PredictionStarted | PredictionCompleted | PredictionFailed]],
    repo: Repository,
    pipelines: PipelineEngine | None = None,
    retry: RetryPolicy | None = None,
) -> list[Handled]:
    """A batch of the outcome queue (one outcome arrives per item): the successes of
    trigger and batch executions close in one statement; the others (a pipeline's, starts,
    failures) go through :func:`on_prediction_outcome` one by one."""
    outcomes: list[Handled | None] = [None] * len(events)
    simple = [index for index, event in enumerate(events) if _closes_alone(event.data)]
    if simple:
        batch = [cast("PredictionCompleted", events[index].data) for index in simple]
        changed, colds = await repo.predictions_completed(batch)
        for cold in colds:
            metrics.COLD_START.observe(cold)
        if any(changed):
            metrics.EXECUTIONS.labels("success").inc(sum(changed))
        for index, closed in zip(simple, changed, strict=True):
            outcomes[index] = HANDLED if closed else DUPLICATE
    for index, event in enumerate(events):
        if outcomes[index] is None:
            outcomes[index] = await on_prediction_outcome(event, repo, pipelines, retry)
    return [outcome or HANDLED for outcome in outcomes]


async def prediction_started(data: PredictionStarted, repo: Repository) -> Handled:
    """A replica started on a batch: its executions are ``in-progress`` with the replica and
    the time. Never backwards: only queued (or waiting-for-budget) executions of the named
    attempt move, so a started event after the outcome, a cancel or a retry changes
    nothing, and neither does a redelivery (``duplicate``)."""
    moved = await repo.prediction_started(data)
    if moved:
        metrics.EXECUTIONS.labels(ExecutionStatus.IN_PROGRESS.value).inc(moved)
    return HANDLED if moved else DUPLICATE


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


ON_PREDICTION_OUTCOME = "on_prediction_outcome"
OUTCOME_PATTERN = "prediction.*.v1"
OUTCOME_CONTRACTS = (PredictionStarted, PredictionCompleted, PredictionFailed)

HANDLERS: tuple[tuple[Handler, str, str, tuple[type[Contract], ...]], ...] = (
    (on_replica_event, MODEL_SERVING, "replica.*.v1", (ReplicaStarted, ReplicaStopped)),
    (on_service_event, MODEL_SERVING, "service.*.v1", (ServiceDeployed, ServiceUndeployed)),
    (on_budget_event, BILLING, "budget.*.v1", (BudgetExhausted, BudgetRestored)),
    (on_task_item_added, ANNOTATION, "task_item.added.v1", (TaskItemAdded,)),
)
"""Each handler with its producer, its binding and the contracts its queue carries
(:func:`consume_prediction_outcomes` consumes the prediction outcomes in batches)."""

PIPELINE_HANDLERS: tuple[Handler, ...] = (on_task_item_added,)
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

    def bound(handler: Handler) -> Callable[[CloudEvent[Any]], Awaitable[Handled]]:
        if handler in PIPELINE_HANDLERS:
            return functools.partial(
                cast("Callable[..., Awaitable[Handled]]", handler), repo=repo, pipelines=engine
            )
        return functools.partial(handler, repo=repo)

    return [
        subscribe(
            broker,
            topology,
            service_metrics,
            subscription(topology, handler, producer, pattern, contracts),
            bound(handler),
            prefetch=prefetch,
        )
        for handler, producer, pattern, contracts in HANDLERS
    ]


def consume_prediction_outcomes(
    runtime: ServiceRuntime,
    repo: Repository,
    *,
    prefetch: int,
    max_batch: int,
    pipelines: PipelineEngine | None = None,
    retry: RetryPolicy | None = None,
) -> BatchConsumer:
    """Consume ``trigger_router.on_prediction_outcome`` (``prediction.*.v1``) in batches,
    started and stopped with the service; return the consumer."""
    handle = functools.partial(
        on_prediction_outcomes,
        repo=repo,
        pipelines=pipelines or PipelineEngine(repo),
        retry=retry or RetryPolicy(),
    )
    return runtime.consume_in_batches(
        consumer_queue(runtime.topology, TRIGGER_ROUTER, ON_PREDICTION_OUTCOME, OUTCOME_PATTERN),
        events_exchange(runtime.topology, MODEL_SERVING),
        EventBatches(OUTCOME_CONTRACTS, handle),
        handler_name=ON_PREDICTION_OUTCOME,
        prefetch=prefetch,
        max_batch=max_batch,
    )
