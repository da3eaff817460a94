"""Execution routes: the ledger, counts, reruns and cancels."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from trigger_router_service import metrics
from trigger_router_service.api.dependencies import Project, Repo, pipelines, settings_of
from trigger_router_service.api.schemas import ExecutionPage, RerunResult
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import Execution, ExecutionFilter, ExecutionStatus
from trigger_router_service.usecases.pipelines import PipelineEngine

router = APIRouter()


async def execution_filter(
    service_id: str | None = None,
    trigger_id: str | None = None,
    status: Annotated[list[ExecutionStatus] | None, Query()] = None,
    item_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601).")] = None,
) -> ExecutionFilter:
    """Execution filters from the query string (``status`` may repeat)."""
    if since is not None and until is not None and since >= until:
        raise RouterError("'since' must be before 'until'")
    return ExecutionFilter(
        service_id=service_id,
        trigger_id=trigger_id,
        statuses=tuple(status or ()),
        item_id=item_id,
        since=since,
        until=until,
    )


Filters = Annotated[ExecutionFilter, Depends(execution_filter)]


@router.get("/executions", tags=["executions"])
async def list_executions(
    request: Request,
    project: Project,
    repository: Repo,
    filters: Filters,
    page: Annotated[int, Query(ge=0)] = 0,
    page_size: Annotated[int, Query(ge=1)] = 100,
) -> ExecutionPage:
    """Executions, newest first, filtered by service, trigger, status, item, time range."""
    limit = settings_of(request).max_page_size
    if page_size > limit:
        raise RouterError(f"page_size {page_size} is over the maximum {limit}")
    found, total = await repository.list_executions(project, filters, page, page_size)
    return ExecutionPage(
        items=found,
        total_count=total,
        page=page,
        page_size=page_size,
        has_next=(page + 1) * page_size < total,
    )


@router.get("/executions/counts", tags=["executions"])
async def count_executions(project: Project, repository: Repo, filters: Filters) -> dict[str, int]:
    """Executions per status (every status present, zeros included)."""
    return await repository.count_executions(project, filters)


@router.post("/executions/rerun", tags=["executions"])
async def rerun_failed(project: Project, repository: Repo, filters: Filters) -> RerunResult:
    """Run every failed execution matching the filters again (attempt + 1)."""
    if filters.statuses and set(filters.statuses) != {ExecutionStatus.FAILED}:
        raise RouterError("a bulk rerun takes failed executions only; drop the status filter")
    rerun = await repository.rerun(project, dataclasses.replace(filters, statuses=()))
    _count_rerun(rerun)
    return RerunResult(rerun=len(rerun), execution_ids=[e.id for e in rerun])


@router.get("/executions/{execution_id}", tags=["executions"])
async def get_execution(execution_id: str, project: Project, repository: Repo) -> Execution:
    """One execution."""
    return await repository.get_execution(project, execution_id)


@router.post("/executions/{execution_id}/rerun", tags=["executions"])
async def rerun_execution(execution_id: str, project: Project, repository: Repo) -> Execution:
    """Run a failed or cancelled execution again (409 for any other status)."""
    [execution] = await repository.rerun(project, ExecutionFilter(), execution_id)
    _count_rerun([execution])
    return execution


@router.post("/executions/{execution_id}/cancel", tags=["executions"])
async def cancel_execution(
    execution_id: str,
    project: Project,
    engine: Annotated[PipelineEngine, Depends(pipelines)],
) -> Execution:
    """Cancel an execution that has not finished (409 once it has). Model-serving and the
    annotation service hear of it (`execution.cancelled.v1`): a worker that has not started
    on its request skips it, and its annotations are not kept (unless a person already
    reviewed them). A late outcome is discarded: it neither turns the execution `success`
    nor moves its pipeline on; a pipeline's predict node fails with the reason."""
    execution = await engine.cancel_execution(project, execution_id)
    metrics.EXECUTIONS.labels("cancelled").inc()
    return execution


def _count_rerun(executions: list[Execution]) -> None:
    for execution in executions:
        metrics.EXECUTIONS.labels(execution.status.value).inc()
        if execution.status is ExecutionStatus.QUEUED:
            metrics.PREDICT_REQUESTS.labels("rerun").inc()
