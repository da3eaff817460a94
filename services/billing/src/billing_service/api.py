"""HTTP API of the billing service: budget, usage and burn rate of the caller's project.

Money is ``Decimal`` end to end and travels as JSON strings (``"12.5000"``), never as
floats; amounts in requests may be JSON strings or numbers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from billing_service import domain
from billing_service.deps import Deps, deps
from billing_service.domain import BillingError
from billing_service.repository import Repository
from common.auth import KeyIntrospector, project_dependency
from common.service import runtime_of

router = APIRouter()

MAX_USAGE_DAYS = 366


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).introspector


Project = Annotated[str, Depends(project_dependency(_introspector))]
Repo = Annotated[Repository, Depends(repo)]


class AmountIn(BaseModel):
    """A money amount."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(description='Currency units, e.g. "25.00".')


class BudgetIn(BaseModel):
    """A new budget; ``null`` makes it unlimited."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal | None = Field(description="Currency units, or null for unlimited.")


class BudgetOut(BaseModel):
    """A project's automation budget as of now."""

    model_config = ConfigDict(from_attributes=True)

    project_id: str
    budget: Decimal | None
    spent: Decimal
    remaining: Decimal | None
    exhausted: bool
    charged_at: datetime | None
    exhausted_at: datetime | None


class UsageRow(BaseModel):
    """Runtime, cost and predictions of one service on one UTC day."""

    service_id: str
    day: date
    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class UsageTotal(BaseModel):
    """Totals over the rows."""

    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class UsageOut(BaseModel):
    """Usage of a project over a range of UTC days."""

    project_id: str
    since: date
    until: date
    rows: list[UsageRow]
    total: UsageTotal


class ReplicaUsage(BaseModel):
    """One replica's metered runtime within the range."""

    replica_id: str
    service_id: str
    instance_type: str
    rate: Decimal
    started_at: datetime | None
    stopped_at: datetime | None
    running: bool
    runtime_seconds: Decimal
    cost: Decimal
    days: dict[date, Decimal]


class BurnRateOut(BaseModel):
    """What the project's running replicas cost right now."""

    project_id: str
    running_replicas: int
    per_second: Decimal
    per_hour: Decimal
    seconds_left: Decimal | None = Field(
        description="Until the budget is spent at this rate (null: unlimited or not burning)."
    )


def _range(since: date | None, until: date | None) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    until = until or today
    since = since or until - timedelta(days=29)
    if since > until:
        raise BillingError("since must not be after until")
    if (until - since).days >= MAX_USAGE_DAYS:
        raise BillingError(f"at most {MAX_USAGE_DAYS} days per usage request")
    return since, until


@router.get("/budget", tags=["budget"])
async def get_budget(project: Project, repository: Repo) -> BudgetOut:
    """The budget, what was spent up to now and whether it is exhausted."""
    return BudgetOut.model_validate(await repository.budget(project, datetime.now(UTC)))


@router.put("/budget", tags=["budget"])
async def set_budget(body: BudgetIn, project: Project, repository: Repo) -> BudgetOut:
    """Set the budget (null: unlimited)."""
    amount = domain.parse_amount(body.amount) if body.amount is not None else None
    view, _ = await repository.change_budget(project, "set", amount, datetime.now(UTC))
    return BudgetOut.model_validate(view)


@router.post("/budget/top-up", tags=["budget"])
async def top_up(body: AmountIn, project: Project, repository: Repo) -> BudgetOut:
    """Add to the budget; an exhausted budget back above its spending emits
    ``budget.restored.v1``."""
    amount = domain.parse_amount(body.amount, allow_zero=False)
    view, _ = await repository.change_budget(project, "top-up", amount, datetime.now(UTC))
    return BudgetOut.model_validate(view)


@router.get("/usage", tags=["usage"])
async def usage(
    project: Project,
    repository: Repo,
    since: date | None = None,
    until: date | None = None,
    service_id: Annotated[str | None, Query()] = None,
) -> UsageOut:
    """Runtime seconds, cost and predictions per service and UTC day (default: 30 days)."""
    since, until = _range(since, until)
    now = datetime.now(UTC)
    replicas = await repository.replicas_between(project, since, until, now)
    predictions = await repository.predictions_between(project, since, until)
    rows = [
        u
        for u in domain.usage_by_service_day(replicas, now, predictions, since=since, until=until)
        if service_id is None or u.service_id == service_id
    ]
    return UsageOut(
        project_id=project,
        since=since,
        until=until,
        rows=[
            UsageRow(
                service_id=u.service_id,
                day=u.day,
                runtime_seconds=u.runtime_seconds,
                cost=u.cost,
                predictions=u.predictions,
            )
            for u in rows
        ],
        total=UsageTotal(
            runtime_seconds=sum((u.runtime_seconds for u in rows), domain.ZERO),
            cost=sum((u.cost for u in rows), domain.ZERO),
            predictions=sum(u.predictions for u in rows),
        ),
    )


@router.get("/usage/replicas", tags=["usage"])
async def replica_usage(
    project: Project, repository: Repo, since: date | None = None, until: date | None = None
) -> list[ReplicaUsage]:
    """Each replica's runtime and cost within the range, split by UTC day."""
    since, until = _range(since, until)
    now = datetime.now(UTC)
    result = []
    for state, rate in await repository.replicas_between(project, since, until, now):
        interval = state.interval(now)
        days = {
            day: secs
            for day, secs in (domain.split_by_day(*interval) if interval else {}).items()
            if since <= day <= until
        }
        seconds = sum(days.values(), domain.ZERO)
        result.append(
            ReplicaUsage(
                replica_id=state.replica_id,
                service_id=state.service_id,
                instance_type=state.instance_type,
                rate=rate,
                started_at=state.start,
                stopped_at=state.stopped_at,
                running=state.running,
                runtime_seconds=seconds,
                cost=domain.cost(seconds, rate),
                days=days,
            )
        )
    return result


@router.get("/burn-rate", tags=["usage"])
async def burn_rate(project: Project, repository: Repo) -> BurnRateOut:
    """Cost per second and per hour of the replicas running now."""
    running = await repository.running(project)
    per_second = domain.burn_rate(running)
    budget = await repository.budget(project, datetime.now(UTC))
    seconds_left = (
        budget.remaining / per_second if budget.remaining is not None and per_second > 0 else None
    )
    return BurnRateOut(
        project_id=project,
        running_replicas=len(running),
        per_second=per_second,
        per_hour=per_second * 3600,
        seconds_left=seconds_left,
    )
