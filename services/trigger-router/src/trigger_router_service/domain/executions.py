"""Executions: one item through one model service, and the states it passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from common.contracts import ItemSnapshot
from common.ids import new_id


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
    {
        ExecutionStatus.CREATED,
        ExecutionStatus.QUEUED,
        ExecutionStatus.IN_PROGRESS,
        ExecutionStatus.WAITING_FOR_BUDGET,
    }
)
"""States a cancel may stop: every unfinished one. The cancel is announced
(``execution.cancelled.v1``): workers skip the request if they have not started on it,
the annotation service discards its annotations; an outcome that still comes is ignored."""

STARTABLE_STATUSES = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.WAITING_FOR_BUDGET})
"""States ``prediction.started.v1`` moves to ``in-progress`` (a request published before
the budget ran out may still be taken): never back from an outcome or a cancel."""

UNFINISHED_STATUSES = frozenset(
    {
        ExecutionStatus.CREATED,
        ExecutionStatus.QUEUED,
        ExecutionStatus.IN_PROGRESS,
        ExecutionStatus.WAITING_FOR_BUDGET,
    }
)
"""States a failure closes, and an undeployed service cancels."""

RETRYABLE_FAILURE_STATUSES = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.IN_PROGRESS})
"""States a retryable failure of the attempt that was sent may rerun from."""


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Backoff before the attempt after ``attempt`` failed for a passing reason:
    ``base * 2^(attempt - 1)``, at most ``max_seconds``."""
    return float(min(base_seconds * 2 ** max(attempt - 1, 0), max_seconds))


SUCCESS_IGNORED_STATUSES = frozenset({ExecutionStatus.SUCCESS, ExecutionStatus.CANCELLED})
"""States a prediction's success leaves alone (a failed execution still turns success:
the late outcome of an attempt that was retried)."""

BULK_RERUN_STATUSES = frozenset({ExecutionStatus.FAILED})
"""States a bulk rerun picks (a cancelled execution is rerun only by its id)."""


def initial_status(budget_exhausted: bool) -> ExecutionStatus:
    """Where a new execution starts: its predict request is held while the budget is spent."""
    return ExecutionStatus.WAITING_FOR_BUDGET if budget_exhausted else ExecutionStatus.QUEUED


class Execution(BaseModel):
    """One item through one model service."""

    id: str
    project_id: str
    service_id: str
    trigger_id: str | None
    batch_id: str | None
    item_id: str
    dataset_id: str
    event_id: str | None
    action: str | None
    status: ExecutionStatus
    attempts: int
    cold_start: bool
    """Whether it waited for a replica to start (queued while the service ran none)."""
    replica_id: str | None
    error: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    pipeline_id: str | None = None
    pipeline_execution_id: str | None = None
    """The pipeline execution whose predict node created it."""
    node_id: str | None = None


@dataclass(frozen=True)
class ExecutionFilter:
    """Filters of an execution list (all optional, AND-ed)."""

    service_id: str | None = None
    trigger_id: str | None = None
    statuses: tuple[ExecutionStatus, ...] = ()
    item_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class NewExecution:
    """An execution about to be inserted."""

    project_id: str
    service_id: str
    item: ItemSnapshot
    status: ExecutionStatus
    cold_start: bool
    trigger_id: str | None = None
    batch_id: str | None = None
    event_id: str | None = None
    action: str | None = None
    once: bool = False
    pipeline_id: str | None = None
    pipeline_execution_id: str | None = None
    node_id: str | None = None
    blob_base64: str | None = None
    """The item's blob, inline, for its first predict request (never stored)."""
    id: str = field(default_factory=lambda: new_id("exe"))
