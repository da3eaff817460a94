"""The autoscaler's decisions: load from queue statistics, replicas from load and policy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trigger_router_service.domain.errors import RouterError


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


def deployment_name(pattern: str, service_id: str) -> str:
    """A Kubernetes Deployment name for a service id (DNS-1123: lowercase, ``-`` not ``_``)."""
    safe = service_id.lower().replace("_", "-").replace(".", "-")
    name = pattern.format(service_id=safe)
    if len(name) > 253:
        raise RouterError(f"deployment name {name!r} is longer than 253 characters")
    return name
