"""Usage reports of a project: per service and day, per replica, and the burn rate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from billing_service.domain import usage as rules
from billing_service.domain.usage import ReplicaUsage, Totals, Usage
from billing_service.repository import Repository


@dataclass(frozen=True)
class UsageReport:
    """Usage of a project over a range of UTC days."""

    project_id: str
    since: date
    until: date
    rows: list[Usage]
    total: Totals


@dataclass(frozen=True)
class BurnRate:
    """What the project's running replicas cost right now."""

    project_id: str
    running_replicas: int
    per_second: Decimal
    per_hour: Decimal
    seconds_left: Decimal | None


def _today() -> date:
    return datetime.now(UTC).date()


async def by_service_day(
    repo: Repository,
    project_id: str,
    since: date | None,
    until: date | None,
    service_id: str | None,
) -> UsageReport:
    """Runtime seconds, cost and predictions per service and UTC day."""
    since, until = rules.usage_range(since, until, _today())
    now = datetime.now(UTC)
    replicas = await repo.replicas_between(project_id, since, until, now)
    predictions = await repo.predictions_between(project_id, since, until)
    rows = [
        u
        for u in rules.usage_by_service_day(replicas, now, predictions, since=since, until=until)
        if service_id is None or u.service_id == service_id
    ]
    return UsageReport(project_id, since, until, rows, rules.totals(rows))


async def by_replica(
    repo: Repository, project_id: str, since: date | None, until: date | None
) -> list[ReplicaUsage]:
    """Each replica's runtime and cost within the range, split by UTC day."""
    since, until = rules.usage_range(since, until, _today())
    now = datetime.now(UTC)
    return [
        rules.replica_usage(state, rate, now, since, until)
        for state, rate in await repo.replicas_between(project_id, since, until, now)
    ]


async def burn_rate(repo: Repository, project_id: str) -> BurnRate:
    """Cost per second and per hour of the replicas running now, and the time left."""
    running = await repo.running(project_id)
    per_second = rules.burn_rate(running)
    budget = await repo.budget(project_id, datetime.now(UTC))
    seconds_left = (
        budget.remaining / per_second if budget.remaining is not None and per_second > 0 else None
    )
    return BurnRate(project_id, len(running), per_second, per_second * 3600, seconds_left)
