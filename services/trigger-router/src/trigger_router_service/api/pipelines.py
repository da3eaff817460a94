"""Pipeline routes: define, start, stop, run items through, follow and rerun."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.ids import new_id
from trigger_router_service import metrics
from trigger_router_service.api.dependencies import (
    Project,
    Repo,
    datasets,
    models,
    pipelines,
    settings_of,
    tasks,
)
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.pipelines import (
    Graph,
    NodeStatus,
    Pipeline,
    PipelineDefinition,
    PipelineExecution,
    PipelineStatus,
    RunStatus,
    build_graph,
    check_editable,
)
from trigger_router_service.domain.triggers import compile_filter
from trigger_router_service.usecases.pipelines import PipelineEngine, check_references

router = APIRouter(tags=["pipelines"])
Engine = Annotated[PipelineEngine, Depends(pipelines)]


class RunIn(BaseModel):
    """Items already in the dataset node's dataset: ids, or a DQL filter over it."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] | None = Field(default=None, min_length=1)
    filter: dict[str, Any] | None = Field(
        default=None, description="DQL filter over the dataset's items ({} = every item)."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> RunIn:
        if (self.item_ids is None) == (self.filter is None):
            raise ValueError("give either item_ids or filter")
        return self


class RunOut(BaseModel):
    """What a run request let in."""

    run_id: str
    items: int
    """Items selected."""
    entered: int
    """Pipeline executions created."""


class RunPage(BaseModel):
    """One page of pipeline executions, newest first."""

    items: list[PipelineExecution]
    total_count: int
    page: int
    page_size: int
    has_next: bool


class RerunIn(BaseModel):
    """Which failed pipeline executions to rerun (none given: every failed one)."""

    model_config = ConfigDict(extra="forbid")

    execution_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)


class RerunOut(BaseModel):
    rerun: int
    execution_ids: list[str]


async def _validated(
    request: Request,
    body: PipelineDefinition,
    project: str,
    repository: Repo,
    authorization: str,
) -> Graph:
    graph = build_graph(body, max_depth=settings_of(request).dql_max_depth)
    await check_references(
        graph,
        project,
        authorization,
        repository,
        datasets(request),
        tasks(request),
        models(request),
    )
    return graph


@router.post("/pipelines", status_code=201)
async def create_pipeline(
    request: Request,
    body: PipelineDefinition,
    project: Project,
    repository: Repo,
    authorization: Annotated[str | None, Header()] = None,
) -> Pipeline:
    """Create a pipeline (status ``created``): one dataset node, a DAG, and every dataset,
    model service and task it names in this project."""
    graph = await _validated(request, body, project, repository, authorization or "")
    return await repository.create_pipeline(project, body, graph.dataset.config.dataset_id)


@router.get("/pipelines")
async def list_pipelines(project: Project, repository: Repo) -> list[Pipeline]:
    """The project's pipelines with their counts."""
    return await repository.list_pipelines(project)


@router.get("/pipelines/{pipeline_id}")
async def get_pipeline(pipeline_id: str, project: Project, repository: Repo) -> Pipeline:
    """One pipeline: pipeline executions per status, and per node per node status."""
    return await repository.get_pipeline(project, pipeline_id)


@router.put("/pipelines/{pipeline_id}")
async def update_pipeline(
    request: Request,
    pipeline_id: str,
    body: PipelineDefinition,
    project: Project,
    repository: Repo,
    authorization: Annotated[str | None, Header()] = None,
) -> Pipeline:
    """Replace the definition (a new version) while the pipeline is not running."""
    current = await repository.get_pipeline(project, pipeline_id)
    check_editable(current.status, "update")
    graph = await _validated(request, body, project, repository, authorization or "")
    return await repository.update_pipeline(
        project, pipeline_id, body, graph.dataset.config.dataset_id
    )


@router.post("/pipelines/{pipeline_id}/start")
async def start_pipeline(pipeline_id: str, project: Project, repository: Repo) -> Pipeline:
    """Let new items in through the dataset node's trigger (items that arrived while it was
    stopped do not enter: use ``/run`` for them)."""
    return await repository.set_pipeline_status(project, pipeline_id, PipelineStatus.RUNNING)


@router.post("/pipelines/{pipeline_id}/stop")
async def stop_pipeline(pipeline_id: str, project: Project, repository: Repo) -> Pipeline:
    """Stop new items entering; items already inside finish their way."""
    return await repository.set_pipeline_status(project, pipeline_id, PipelineStatus.STOPPED)


@router.delete("/pipelines/{pipeline_id}", status_code=204)
async def delete_pipeline(pipeline_id: str, project: Project, repository: Repo) -> None:
    """Delete a pipeline that is not running, with its pipeline executions."""
    await repository.delete_pipeline(project, pipeline_id)


@router.post("/pipelines/{pipeline_id}/run", status_code=201)
async def run_pipeline(
    request: Request,
    pipeline_id: str,
    body: RunIn,
    project: Project,
    repository: Repo,
    engine: Engine,
    authorization: Annotated[str | None, Header()] = None,
) -> RunOut:
    """Send items already in the dataset through the pipeline now, by id or DQL filter."""
    settings = settings_of(request)
    row = await repository.pipeline_row(project, pipeline_id)
    graph = engine.graphs.graph(row.id, row.version, row.definition)
    dataset_id = graph.dataset.config.dataset_id
    client = datasets(request)
    key = authorization or ""
    limit = settings.pipeline_run_max_items
    if body.item_ids is not None:
        ids = list(dict.fromkeys(body.item_ids))
        if len(ids) > limit:
            raise RouterError(f"a run takes at most {limit} items")
        items = await client.items_by_id(key, ids)
        elsewhere = [i.id for i in items if i.dataset_id != dataset_id]
        if elsewhere:
            raise RouterError(
                f"{len(elsewhere)} item(s) are not in dataset node {graph.dataset.id!r}'s "
                f"dataset {dataset_id}: {', '.join(elsewhere[:20])}"
            )
    else:
        filter_ = body.filter or {}
        compile_filter(filter_, max_depth=settings.dql_max_depth)
        items = await client.query(key, dataset_id, filter_, limit)
    run_id = new_id("run")
    runs = [(engine.new_run(row, graph, item, run_id=run_id), graph) for item in items]
    async with repository.transaction() as conn:
        entered = await engine.enter(conn, runs)
    for execution in entered.executions:
        metrics.EXECUTIONS.labels(execution.status.value).inc()
    return RunOut(run_id=run_id, items=len(items), entered=entered.runs)


@router.get("/pipelines/{pipeline_id}/executions")
async def list_pipeline_executions(
    request: Request,
    pipeline_id: str,
    project: Project,
    repository: Repo,
    status: RunStatus | None = None,
    node_id: Annotated[str | None, Query(max_length=64)] = None,
    node_status: NodeStatus | None = None,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    page_size: Annotated[int, Query(ge=1)] = 100,
) -> RunPage:
    """Pipeline executions, newest first: by status, and by a node (in a node status)."""
    limit = settings_of(request).max_page_size
    if page_size > limit:
        raise RouterError(f"page_size {page_size} is over the maximum {limit}")
    await repository.get_pipeline(project, pipeline_id)
    found, total = await repository.list_runs(
        project,
        pipeline_id,
        status=status,
        node_id=node_id,
        node_status=node_status,
        page=page,
        page_size=page_size,
    )
    return RunPage(
        items=found,
        total_count=total,
        page=page,
        page_size=page_size,
        has_next=(page + 1) * page_size < total,
    )


@router.post("/pipelines/{pipeline_id}/executions/rerun")
async def rerun_pipeline_executions(
    pipeline_id: str,
    project: Project,
    repository: Repo,
    engine: Engine,
    body: RerunIn | None = None,
) -> RerunOut:
    """Run failed pipeline executions again from the node that failed."""
    await repository.get_pipeline(project, pipeline_id)
    ids = body.execution_ids if body is not None else None
    rerun = await engine.rerun(project, pipeline_id, ids)
    return RerunOut(rerun=len(rerun), execution_ids=rerun)
