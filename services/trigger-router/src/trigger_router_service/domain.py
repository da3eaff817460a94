"""Pure rules of the trigger-router: trigger specs, matching, execution states and
the autoscaler's decisions.

Nothing here does I/O. The HTTP routes, the item-event consumer and the
autoscaler all go through these functions, and the database's uniqueness
constraints back the ``Once``/redelivery rules up where two replicas race.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.dql import Condition, DQLError, Node, matches, parse_filter
from common.errors import ServiceError

# --------------------------------------------------------------------------- errors


class RouterError(ServiceError):
    """A rule was broken; ``status`` is the HTTP status that reports it."""

    status = 400


class NotFoundError(RouterError):
    """The thing does not exist in the caller's project (another project's ids too)."""

    status = 404


class ConflictError(RouterError):
    """The change clashes with existing data or the current state."""

    status = 409


# --------------------------------------------------------------------------- triggers


class Action(StrEnum):
    """What happened to the resource (Dataloop's trigger actions)."""

    CREATED = "Created"
    UPDATED = "Updated"
    METADATA_UPDATED = "MetadataUpdated"
    DELETED = "Deleted"


ACTION_BY_ROUTING_KEY: dict[str, Action] = {
    "item.created.v1": Action.CREATED,
    "item.updated.v1": Action.UPDATED,
    "item.metadata_updated.v1": Action.METADATA_UPDATED,
    "item.deleted.v1": Action.DELETED,
}
"""Item event routing keys and the trigger action each one is."""

ACTIONS_BY_RESOURCE: dict[str, frozenset[Action]] = {"Item": frozenset(Action)}
"""Actions a trigger on each resource may listen to."""


class ExecutionMode(StrEnum):
    """``Once``: at most one execution per (trigger, item) ever. ``Always``: every match."""

    ONCE = "Once"
    ALWAYS = "Always"


class Operation(BaseModel):
    """What a trigger runs on a match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["predict"] = "predict"
    """Only ``predict`` for now (pipelines add more)."""
    service_id: str = Field(min_length=1, max_length=200)
    """The model service that predicts."""


class TriggerSpec(BaseModel):
    """Dataloop's trigger spec: resource, actions, mode, DQL filter and operation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource: Literal["Item"] = "Item"
    """Resource the trigger listens to."""
    actions: list[Action] = Field(default_factory=lambda: [Action.CREATED], min_length=1)
    """Actions that fire it."""
    execution_mode: ExecutionMode = ExecutionMode.ONCE
    """``Once`` or ``Always``."""
    filter: dict[str, Any] = Field(default_factory=dict)
    """DQL filter the item must match (``{}`` matches every visible file)."""
    operation: Operation
    """What runs on a match."""

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, actions: list[Action]) -> list[Action]:
        return list(dict.fromkeys(actions))


def validate_spec(spec: TriggerSpec, *, max_depth: int = 10) -> Node:
    """Check what pydantic cannot (actions allowed for the resource, the filter parses)
    and return the parsed filter. Raises :class:`RouterError` with a clear message."""
    allowed = ACTIONS_BY_RESOURCE[spec.resource]
    wrong = [a.value for a in spec.actions if a not in allowed]
    if wrong:
        raise RouterError(f"actions {wrong} are not allowed for resource {spec.resource}")
    return compile_filter(spec.filter, max_depth=max_depth)


def compile_filter(filter_: Any, *, max_depth: int = 10) -> Node:
    """Parse a trigger's filter with Dataloop's defaults (hidden items and dirs excluded)."""
    try:
        return parse_filter(filter_, max_depth=max_depth, defaults=True)
    except DQLError as exc:
        where = f" at {exc.path}" if exc.path else ""
        raise RouterError(f"invalid filter{where}: {exc.message}") from exc


@dataclass(frozen=True)
class ActiveTrigger:
    """A trigger as the router matches it: parsed once per batch."""

    id: str
    project_id: str
    service_id: str
    actions: frozenset[Action]
    mode: ExecutionMode
    filter: Node


MismatchHook = Callable[[ActiveTrigger, Condition, Any], None]


def matching_triggers(
    triggers: Iterable[ActiveTrigger],
    action: Action,
    item: Mapping[str, Any],
    *,
    on_mismatch: MismatchHook | None = None,
) -> list[ActiveTrigger]:
    """The triggers of the item's project that fire for ``action`` on ``item``.

    A filter that cannot be evaluated on the item (a type mismatch) does not match
    and is reported to ``on_mismatch``; it never raises.
    """
    project = item.get("project_id")
    fired: list[ActiveTrigger] = []
    for trigger in triggers:
        if trigger.project_id != project or action not in trigger.actions:
            continue
        hook = None
        if on_mismatch is not None:

            def hook(cond: Condition, value: Any, t: ActiveTrigger = trigger) -> None:
                on_mismatch(t, cond, value)

        if matches(trigger.filter, item, on_mismatch=hook):
            fired.append(trigger)
    return fired


# --------------------------------------------------------------------------- executions


class ExecutionStatus(StrEnum):
    """Execution life cycle."""

    CREATED = "created"
    QUEUED = "queued"
    IN_PROGRESS = "in-progress"
    SUCCESS = "success"
    FAILED = "failed"
    WAITING_FOR_BUDGET = "waiting-for-budget"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
"""States nothing moves an execution out of except a rerun (failed) or nothing (others)."""

OUTSTANDING_STATUSES = frozenset(
    {ExecutionStatus.QUEUED, ExecutionStatus.IN_PROGRESS, ExecutionStatus.WAITING_FOR_BUDGET}
)
"""States whose predict request may still be in a queue or with a replica."""

RERUNNABLE_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
"""States a rerun may start from."""

CANCELLABLE_STATUSES = frozenset(
    {ExecutionStatus.CREATED, ExecutionStatus.QUEUED, ExecutionStatus.WAITING_FOR_BUDGET}
)
"""States a cancel may stop (a replica may still run a queued one: its outcome is ignored)."""


def initial_status(budget_exhausted: bool) -> ExecutionStatus:
    """Where a new execution starts: its predict request is held while the budget is spent."""
    return ExecutionStatus.WAITING_FOR_BUDGET if budget_exhausted else ExecutionStatus.QUEUED


# --------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class ScalingPolicy:
    """A model service's scaling settings (from ``service.deployed.v1``)."""

    min_replicas: int = 0
    max_replicas: int = 1
    queue_per_replica: int = 10
    cooldown_seconds: float = 60.0
    concurrency: int = 4


@dataclass(frozen=True)
class QueueStats:
    """What the broker and the ledger say about one service's predict queue."""

    ready: int
    """Messages waiting in the queue (passive declare ``message_count``)."""
    consumers: int
    """Consumers on the queue (passive declare ``consumer_count``)."""
    outstanding: int
    """Executions the ledger holds as published and not finished."""
    exists: bool = True
    """False when the queue is not declared yet (service not deployed)."""


def estimate_load(stats: QueueStats, concurrency: int) -> int:
    """Load = ready + unacknowledged messages.

    A passive declare counts only ready messages. Unacked ones are held by the
    replicas, at most ``consumers * concurrency`` (their prefetch); the ledger's
    outstanding executions minus the ready ones tell how many of those slots are
    really in use. So ``unacked = clamp(outstanding - ready, 0, consumers * concurrency)``.
    """
    unacked = min(max(stats.outstanding - stats.ready, 0), stats.consumers * concurrency)
    return max(stats.ready, 0) + unacked


def replicas_for_load(load: int, policy: ScalingPolicy) -> int:
    """``clamp(ceil(load / queue_per_replica), min, max)``."""
    wanted = math.ceil(load / policy.queue_per_replica) if load > 0 else 0
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


@dataclass(frozen=True)
class ScalingInput:
    """Everything one decision for one service looks at."""

    policy: ScalingPolicy
    current: int
    """Replicas asked for so far."""
    load: int
    """Ready + unacked messages."""
    now: float
    """Seconds (monotonic or epoch, as long as ``last_active`` uses the same clock)."""
    last_active: float | None
    """When the service last had load (or work was routed to it); ``None`` = never."""
    budget_exhausted: bool = False
    woken: bool = False
    """Work was just routed to it (counts as load of one before the queue shows it)."""
    deployed: bool = True
    """False when the service is not ready (deploying, failed, undeployed)."""


@dataclass(frozen=True)
class ScalingDecision:
    """The replicas to ask for and why (``reason`` is ``None`` when nothing changes)."""

    desired: int
    reason: str | None
    active: bool
    """Whether this tick counts as activity (resets the cooldown clock)."""
    load: int = 0
    """The load the decision used (a wake-up counts as at least 1)."""

    @property
    def changed(self) -> bool:
        """Whether the backend must be told."""
        return self.reason is not None


def decide(inp: ScalingInput) -> ScalingDecision:
    """One autoscaler decision.

    - Not deployed (deploying, failed, undeployed): 0 replicas.
    - Up at once when the load needs more replicas (``work-arrived`` when woken from 0,
      ``queue-depth`` otherwise), except for a project whose budget is exhausted,
      which never scales up.
    - Down only after ``cooldown_seconds`` without any load; then straight to the
      target (``min_replicas``, or 0 while the budget is exhausted).
    """
    policy = inp.policy
    load = max(inp.load, 1) if inp.woken else inp.load
    active = load > 0
    if not inp.deployed:
        return ScalingDecision(0, "not-deployed" if inp.current else None, False, load)
    # Spending stopped: min_replicas no longer holds replicas up, and nothing scales up.
    floor = 0 if inp.budget_exhausted else policy.min_replicas
    by_load = replicas_for_load(
        load, ScalingPolicy(0, policy.max_replicas, policy.queue_per_replica)
    )
    target = max(floor, by_load)
    if inp.budget_exhausted:
        target = min(target, inp.current)
    if target > inp.current:
        if by_load <= inp.current:
            reason = "min-replicas"
        elif inp.current == 0 and inp.woken:
            reason = "work-arrived"
        else:
            reason = "queue-depth"
        return ScalingDecision(target, reason, active, load)
    if target < inp.current:
        if active:
            # Replicas still have work: shrinking now would only requeue it.
            return ScalingDecision(inp.current, None, active, load)
        idle_for = math.inf if inp.last_active is None else inp.now - inp.last_active
        if idle_for >= policy.cooldown_seconds:
            reason = "budget-exhausted" if inp.budget_exhausted else "cooldown"
            return ScalingDecision(target, reason, active, load)
    return ScalingDecision(inp.current, None, active, load)


# --------------------------------------------------------------------------- budgets, services


def is_newer(incoming: datetime, stored: datetime | None) -> bool:
    """Last writer by event time: an event older than what is stored changes nothing."""
    return stored is None or incoming >= stored


def deployment_name(pattern: str, service_id: str) -> str:
    """A Kubernetes Deployment name for a service id (DNS-1123: lowercase, ``-`` not ``_``)."""
    safe = service_id.lower().replace("_", "-").replace(".", "-")
    name = pattern.format(service_id=safe)
    if len(name) > 253:
        raise RouterError(f"deployment name {name!r} is longer than 253 characters")
    return name
