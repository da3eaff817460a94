"""Routes of usage: per service and day, per replica, and the burn rate."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from billing_service.api.dependencies import Project, Repo
from billing_service.api.schemas import BurnRateOut, ReplicaUsage, UsageOut
from billing_service.usecases import usage as reports

router = APIRouter(tags=["usage"])


@router.get("/usage")
async def usage(
    project: Project,
    repository: Repo,
    since: date | None = None,
    until: date | None = None,
    service_id: Annotated[str | None, Query()] = None,
) -> UsageOut:
    """Runtime seconds, cost and predictions per service and UTC day (default: 30 days)."""
    report = await reports.by_service_day(repository, project, since, until, service_id)
    return UsageOut.model_validate(report)


@router.get("/usage/replicas")
async def replica_usage(
    project: Project, repository: Repo, since: date | None = None, until: date | None = None
) -> list[ReplicaUsage]:
    """Each replica's runtime and cost within the range, split by UTC day."""
    return [
        ReplicaUsage.model_validate(r)
        for r in await reports.by_replica(repository, project, since, until)
    ]


@router.get("/burn-rate")
async def burn_rate(project: Project, repository: Repo) -> BurnRateOut:
    """Cost per second and per hour of the replicas running now."""
    return BurnRateOut.model_validate(await reports.burn_rate(repository, project))
