"""Routes of usage: per service and day, per replica, and the burn rate."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from billing_service.api.dependencies import Project, Repo
from billing_service.api.schemas import (
    BurnRateOut,
    ModelUsageReportOut,
    ReplicaUsage,
    UsageOut,
)
from billing_service.usecases import models
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


@router.get("/usage/models", response_model_by_alias=True)
async def model_usage(
    project: Project,
    repository: Repo,
    start: Annotated[
        datetime | None, Query(alias="from", description="Window start (default: ever).")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Window end, excluded (default: now).")
    ] = None,
) -> ModelUsageReportOut:
    """What pre-labeling saves, per model version of each model service: runtime seconds
    and cost, predictions, reviews, acceptance rate, share auto-accepted and **cost per
    accepted label** (runtime cost / predictions people accepted unchanged; null when none
    were).

    Predictions count when they finished in the window, reviews when they were made (the
    latest decision per task item counts, the earlier ones are replaced); runtime is the
    replica-seconds inside the window.

    Runtime is metered per replica, and replica events carry no model, so a replica's
    runtime is credited to the model versions its own predictions name (split by their
    counts; one version in practice). A replica that predicted nothing (a cold start that
    found no work, an idle ``min_replicas`` replica) is credited to the version its service
    had most recently in use when it started, else to the first one it used later; a
    service that never predicted keeps its runtime on a row whose ``model`` is null.

    Acceptance rate is accepted unchanged / decisions made by people (auto-accepted items
    excluded); the auto-accepted share is auto-accepted / all decisions. Task items added
    without a prediction are left out.
    """
    report = await models.by_model(repository, project, start, end)
    return ModelUsageReportOut.model_validate(report)
