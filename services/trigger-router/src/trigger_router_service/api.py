"""HTTP API of the trigger-router: triggers, executions and the router's view of
model services. Every route needs a project API key (``Authorization: Bearer``),
checked through the dataset service; another project's ids answer 404.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.auth import KeyIntrospector, project_dependency
from common.service import runtime_of
from trigger_router_service import metrics
from trigger_router_service.datasets import DatasetClient
from trigger_router_service.deps import Deps, deps
from trigger_router_service.domain import (
    ExecutionStatus,
    NotFoundError,
    RouterError,
    TriggerSpec,
    compile_filter,
    validate_spec,
)
from trigger_router_service.repository import (
    Batch,
    Execution,
    ExecutionFilter,
    ModelService,
    Repository,
    Trigger,
)
from trigger_router_service.settings import Settings

router = APIRouter()


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


def introspector(request: Request) -> KeyIntrospector:
    """The API key checker."""
    return runtime_of(request.app).deps_as(Deps).keys


Project = Annotated[str, Depends(project_dependency(introspector))]
Repo = Annotated[Repository, Depends(repo)]


class TriggerIn(BaseModel):
    """A new trigger (Dataloop's shape)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    active: bool = True
    spec: TriggerSpec


class TriggerPatch(BaseModel):
    """A change to a trigger; only the fields given change (``spec`` is replaced whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None
    spec: TriggerSpec | None = None


class ExecutionPage(BaseModel):
    """One page of executions, newest first."""

    items: list[Execution]
    total_count: int
    page: int
    page_size: int
    has_next: bool


class RerunResult(BaseModel):
    """Executions a bulk rerun started again."""

    rerun: int
    execution_ids: list[str]


async def _check_service(repository: Repository, project: str, service_id: str) -> None:
    status = await repository.service_in_project(project, service_id)
    if status is None:
        raise RouterError(f"model service {service_id} does not exist in this project")
    if status == "undeployed":
        raise RouterError(f"model service {service_id} is undeployed")


# ---------------------------------------------------------------------- triggers


@router.post("/triggers", status_code=201, tags=["triggers"])
async def create_trigger(
    request: Request, body: TriggerIn, project: Project, repository: Repo
) -> Trigger:
    """Create a trigger: the filter must parse and the service must exist in the project."""
    validate_spec(body.spec, max_depth=settings_of(request).dql_max_depth)
    await _check_service(repository, project, body.spec.operation.service_id)
    return await repository.create_trigger(project, body.name, body.active, body.spec)


@router.get("/triggers", tags=["triggers"])
async def list_triggers(
    project: Project,
    repository: Repo,
    service_id: str | None = None,
    active: bool | None = None,
) -> list[Trigger]:
    """The project's triggers (optionally of one service, or only active/paused ones)."""
    return await repository.list_triggers(project, service_id, active)


@router.get("/triggers/{trigger_id}", tags=["triggers"])
async def get_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """One trigger."""
    return await repository.get_trigger(project, trigger_id)


@router.patch("/triggers/{trigger_id}", tags=["triggers"])
async def update_trigger(
    request: Request, trigger_id: str, body: TriggerPatch, project: Project, repository: Repo
) -> Trigger:
    """Change a trigger; the change applies to the next event, no restart needed.

    A failed trigger (its service went away) comes back only with a new ``spec`` whose
    service exists.
    """
    current = await repository.get_trigger(project, trigger_id)
    revive = False
    if body.spec is not None:
        validate_spec(body.spec, max_depth=settings_of(request).dql_max_depth)
        await _check_service(repository, project, body.spec.operation.service_id)
        revive = current.status == "failed"
    return await repository.update_trigger(
        project, trigger_id, name=body.name, active=body.active, spec=body.spec, revive=revive
    )


@router.post("/triggers/{trigger_id}/pause", tags=["triggers"])
async def pause_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """Stop a trigger from firing (``active = false``)."""
    return await repository.update_trigger(project, trigger_id, active=False)


@router.post("/triggers/{trigger_id}/resume", tags=["triggers"])
async def resume_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """Let a paused trigger fire again; a failed one only if its service is back."""
    current = await repository.get_trigger(project, trigger_id)
    revive = False
    if current.status == "failed":
        await _check_service(repository, project, current.spec.operation.service_id)
        revive = True
    return await repository.update_trigger(project, trigger_id, active=True, revive=revive)


@router.delete("/triggers/{trigger_id}", status_code=204, tags=["triggers"])
async def delete_trigger(trigger_id: str, project: Project, repository: Repo) -> None:
    """Delete a trigger (its executions stay in the ledger)."""
    await repository.delete_trigger(project, trigger_id)


# ---------------------------------------------------------------------- executions


def validate_filter(filter_: dict[str, Any], *, max_depth: int) -> None:
    """Reject a bad filter here, with the router's message, before asking the dataset."""
    compile_filter(filter_, max_depth=max_depth)


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
async def cancel_execution(execution_id: str, project: Project, repository: Repo) -> Execution:
    """Cancel an execution that has not started (a late outcome will not change it)."""
    execution = await repository.cancel(project, execution_id)
    metrics.EXECUTIONS.labels("cancelled").inc()
    return execution


def _count_rerun(executions: list[Execution]) -> None:
    for execution in executions:
        metrics.EXECUTIONS.labels(execution.status.value).inc()
        if execution.status is ExecutionStatus.QUEUED:
            metrics.PREDICT_REQUESTS.labels("rerun").inc()


# ---------------------------------------------------------------------- batch predict


class PredictIn(BaseModel):
    """Items to run a model service on now: ids, or a dataset and a DQL filter."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] | None = Field(default=None, min_length=1)
    dataset_id: str | None = None
    filter: dict[str, Any] | None = Field(
        default=None, description="DQL filter over the dataset's items ({} = every item)."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> PredictIn:
        if (self.item_ids is None) == (self.dataset_id is None):
            raise ValueError("give either item_ids or dataset_id (with an optional filter)")
        if self.item_ids is not None and self.filter is not None:
            raise ValueError("filter goes with dataset_id, not with item_ids")
        return self


def datasets(request: Request) -> DatasetClient:
    """The dataset service client."""
    return runtime_of(request.app).deps_as(Deps).datasets


@router.post("/services/{service_id}/predict", status_code=201, tags=["batches"])
async def predict(
    request: Request,
    service_id: str,
    body: PredictIn,
    project: Project,
    repository: Repo,
    authorization: Annotated[str | None, Header()] = None,
) -> Batch:
    """Run the service on the picked items now: one execution per item, one batch."""
    await _check_service(repository, project, service_id)
    settings = settings_of(request)
    client = datasets(request)
    # The project dependency already checked this key; the dataset service sees it too.
    key = authorization or ""
    if body.item_ids is not None:
        ids = list(dict.fromkeys(body.item_ids))
        if len(ids) > settings.batch_max_items:
            raise RouterError(f"a batch takes at most {settings.batch_max_items} items")
        items = await client.items_by_id(key, ids)
        selection: dict[str, Any] = {"item_ids": ids}
    else:
        assert body.dataset_id is not None
        filter_ = body.filter or {}
        validate_filter(filter_, max_depth=settings.dql_max_depth)
        items = await client.query(key, body.dataset_id, filter_, settings.batch_max_items)
        selection = {"dataset_id": body.dataset_id, "filter": filter_}
    batch = await repository.create_batch(project, service_id, selection, items)
    for status, count in batch.counts.items():
        if count:
            metrics.EXECUTIONS.labels(status).inc(count)
    metrics.PREDICT_REQUESTS.labels("batch").inc(batch.counts.get("queued", 0))
    return batch


@router.get("/batches", tags=["batches"])
async def list_batches(project: Project, repository: Repo) -> list[Batch]:
    """The project's latest batches with their progress."""
    return await repository.list_batches(project)


@router.get("/batches/{batch_id}", tags=["batches"])
async def get_batch(batch_id: str, project: Project, repository: Repo) -> Batch:
    """One batch: executions per status and progress."""
    return await repository.get_batch(project, batch_id)


@router.post("/batches/{batch_id}/cancel", tags=["batches"])
async def cancel_batch(batch_id: str, project: Project, repository: Repo) -> Batch:
    """Cancel every execution of the batch that has not started."""
    batch, cancelled = await repository.cancel_batch(project, batch_id)
    if cancelled:
        metrics.EXECUTIONS.labels("cancelled").inc(cancelled)
    return batch


# ---------------------------------------------------------------------- services


@router.get("/services", tags=["services"])
async def list_services(project: Project, repository: Repo) -> list[ModelService]:
    """The project's model services as the router knows them, with replica counts."""
    return await repository.list_services(project)


@router.get("/services/{service_id}", tags=["services"])
async def get_service(service_id: str, project: Project, repository: Repo) -> ModelService:
    """One model service."""
    found = await repository.list_services(project, service_id)
    if not found:
        raise NotFoundError(f"model service {service_id} not found")
    return found[0]
