"""Items through pipelines: entering the dataset node, running predict and task nodes, and
moving on when a prediction lands or the annotation service added the item to a task.

Every step is one transaction: node statuses, new ledger executions (predict requests in
the outbox, services woken from 0) and ``add_task_item.v1`` commands commit together, and
each step is idempotent (a node changes only from the status the step expects), so
redelivered outcomes and events change nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from common.contracts import (
    AddTaskItem,
    ItemSnapshot,
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
    PredictionFailed,
    TaskItemAdded,
)
from common.dql import prediction_document
from common.envelope import make_event
from common.outbox import enqueue
from common.topology import ANNOTATION
from trigger_router_service import metrics
from trigger_router_service.adapters.datasets import DatasetClient
from trigger_router_service.adapters.models import ModelClient
from trigger_router_service.adapters.tasks import TaskClient
from trigger_router_service.domain.errors import ConflictError, NotFoundError
from trigger_router_service.domain.executions import (
    Execution,
    ExecutionStatus,
    NewExecution,
    initial_status,
)
from trigger_router_service.domain.pipelines import (
    Graph,
    NodeStatus,
    NodeType,
    PipelineDefinition,
    PipelineError,
    PredictNode,
    RunStatus,
    TaskNode,
    advance,
    build_graph,
    enters,
    first_failed,
    input_type_problem,
    refused_items_filter,
    run_status,
    taken_edges,
)
from trigger_router_service.domain.routing import ItemEvent
from trigger_router_service.domain.triggers import ExecutionMode
from trigger_router_service.repository import Repository
from trigger_router_service.repository.base import SOURCE
from trigger_router_service.repository.pipelines import NewRun, NodeChange, PipelineRow, RunState
from trigger_router_service.repository.scaling import scaling_state


@dataclass
class Entered:
    """What letting items into pipelines did."""

    runs: int = 0
    executions: list[NewExecution] = field(default_factory=list)
    commands: int = 0


class GraphCache:
    """Validated graphs by (pipeline, version): a version never changes."""

    def __init__(self, max_depth: int, size: int = 1000) -> None:
        self._max_depth = max_depth
        self._size = size
        self._graphs: dict[tuple[str, int], Graph] = {}

    def graph(self, pipeline_id: str, version: int, definition: dict[str, Any]) -> Graph:
        key = (pipeline_id, version)
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) > self._size:
                self._graphs.clear()
            graph = build_graph(
                PipelineDefinition.model_validate(definition), max_depth=self._max_depth
            )
            self._graphs[key] = graph
        return graph


DISCARDED = frozenset({ExecutionStatus.CANCELLED})
"""Ledger states whose late prediction outcome a pipeline ignores."""


class PipelineEngine:
    """The steps of an item's way through a pipeline."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.graphs = GraphCache(repo.dql_max_depth)

    # ------------------------------------------------------------------ entering

    def entries(
        self, pipelines: Sequence[PipelineRow], events: Sequence[ItemEvent]
    ) -> list[tuple[NewRun, Graph]]:
        """A new pipeline execution per (event, running pipeline whose dataset node lets
        the item in), for events that happened since the pipeline last started."""
        runs: list[tuple[NewRun, Graph]] = []
        graphs = [(p, self.graphs.graph(p.id, p.version, p.definition)) for p in pipelines]
        for event in events:
            document = event.item.as_filter_document()
            for pipeline, graph in graphs:
                if pipeline.project_id != event.item.project_id:
                    continue
                if pipeline.started_at is not None and event.time < pipeline.started_at:
                    # Happened while the pipeline was stopped, routed after its restart:
                    # a restart takes new items only.
                    continue
                if enters(graph, event.action, document):
                    once = graph.dataset.config.trigger.execution_mode is ExecutionMode.ONCE
                    new = self.new_run(
                        pipeline, graph, event.item, event_id=event.event_id, once=once
                    )
                    runs.append((new, graph))
        return runs

    @staticmethod
    def new_run(
        pipeline: PipelineRow,
        graph: Graph,
        item: ItemSnapshot,
        *,
        event_id: str | None = None,
        run_id: str | None = None,
        once: bool = False,
    ) -> NewRun:
        nodes = {n.id: (n.type.value, NodeStatus.PENDING) for n in graph.definition.nodes}
        nodes[graph.dataset.id] = (NodeType.DATASET.value, NodeStatus.SUCCESS)
        return NewRun(
            pipeline_id=pipeline.id,
            project_id=pipeline.project_id,
            version=pipeline.version,
            item=item.model_dump(mode="json"),
            item_id=item.id,
            dataset_id=item.dataset_id,
            nodes=nodes,
            event_id=event_id,
            run_id=run_id,
            once=once,
        )

    async def enter(
        self, conn: asyncpg.Connection, runs: Sequence[tuple[NewRun, Graph]]
    ) -> Entered:
        """Insert the pipeline executions (duplicates turned away) and run the nodes after
        each one's dataset node, inside the caller's transaction."""
        entered = Entered()
        inserted = await self.repo.insert_runs(conn, [new for new, _ in runs])
        entered.runs = len(inserted)
        if not inserted:
            return entered
        metrics.PIPELINE_EXECUTIONS.labels(RunStatus.RUNNING.value).inc(len(inserted))
        steps: list[tuple[RunState, Graph, list[str]]] = []
        for new, graph in runs:
            if new.id not in inserted:
                continue
            state = RunState(
                id=new.id,
                pipeline_id=new.pipeline_id,
                project_id=new.project_id,
                version=new.version,
                definition={},
                status=RunStatus.RUNNING,
                item=new.item,
                prediction=None,
                taken=[],
                nodes={node_id: status for node_id, (_, status) in new.nodes.items()},
                attempts=dict.fromkeys(new.nodes, 0),
            )
            steps.append((state, graph, [graph.dataset.id]))
        await self._succeeded(conn, steps, entered)
        return entered

    # ------------------------------------------------------------------ outcomes

    async def prediction_completed(
        self, data: PredictionCompleted, conn: asyncpg.Connection | None = None
    ) -> bool:
        """The predict node of this execution succeeded: evaluate its out-edges on the item
        and the prediction, start or skip what follows. False when nothing changed.

        In ``conn``'s transaction when given (the ledger's update commits with it)."""
        if conn is None:
            async with self.repo.transaction() as own:
                return await self.prediction_completed(data, own)
        found = await self._locked(conn, data.execution_id)
        if found is None:
            return False
        state, graph, node_id, status = found
        if state.nodes.get(node_id) not in (NodeStatus.RUNNING, NodeStatus.FAILED):
            return False
        if status in DISCARDED:
            return False  # cancelled: the replica ran it anyway, its outcome is dropped
        state.prediction = {
            "execution_id": data.execution_id,
            "service_id": data.service_id,
            "model": data.model.model_dump(mode="json"),
            "annotations": [a.model_dump(mode="json") for a in data.annotations],
        }
        await self._observe(conn, state, graph, node_id, NodeStatus.SUCCESS)
        await self._succeeded(conn, [(state, graph, [node_id])], Entered())
        return True

    async def prediction_failed(self, data: PredictionFailed) -> bool:
        """The predict node failed: the node and its pipeline execution are ``failed``."""
        async with self.repo.transaction() as conn:
            found = await self._locked(conn, data.execution_id)
            if found is None:
                return False
            state, graph, node_id, _status = found
            if state.nodes.get(node_id) is not NodeStatus.RUNNING:
                return False
            await self._fail(conn, state, graph, node_id, data.reason)
        return True

    async def execution_cancelled(
        self, execution_id: str, conn: asyncpg.Connection | None = None
    ) -> bool:
        """A predict node's execution was cancelled: the node (and its pipeline
        execution) fails with that reason, so no ``add_task_item.v1`` follows. False when it
        is no pipeline's or not running. In ``conn``'s transaction when given (the cancel
        commits with it)."""
        if conn is None:
            async with self.repo.transaction() as own:
                return await self.execution_cancelled(execution_id, own)
        found = await self._locked(conn, execution_id)
        if found is None:
            return False
        state, graph, node_id, _status = found
        if state.nodes.get(node_id) is not NodeStatus.RUNNING:
            return False
        await self._fail(conn, state, graph, node_id, f"execution {execution_id} cancelled")
        return True

    async def cancel_execution(self, project_id: str, execution_id: str) -> Execution:
        """Cancel an execution (announced with ``execution.cancelled.v1``) and fail its
        pipeline's predict node, in one transaction."""
        async with self.repo.transaction() as conn:
            execution = await self.repo.cancel(project_id, execution_id, conn)
            await self.execution_cancelled(execution_id, conn)
        return execution

    async def task_item_added(self, data: TaskItemAdded) -> bool:
        """The annotation service added the item to the task node's task."""
        if data.pipeline_execution_id is None or data.node_id is None:
            return False
        async with self.repo.transaction() as conn:
            state = await self.repo.lock_run(conn, data.pipeline_execution_id)
            if state is None or state.nodes.get(data.node_id) not in (
                NodeStatus.RUNNING,
                NodeStatus.FAILED,
            ):
                return False
            graph = self.graphs.graph(state.pipeline_id, state.version, state.definition)
            await self._observe(conn, state, graph, data.node_id, NodeStatus.SUCCESS)
            await self._succeeded(conn, [(state, graph, [data.node_id])], Entered())
        return True

    async def rerun(
        self, project_id: str, pipeline_id: str, ids: Sequence[str] | None = None
    ) -> list[str]:
        """Run failed pipeline executions again from the node that failed."""
        rerun: list[str] = []
        async with self.repo.transaction() as conn:
            for run_id in await self.repo.failed_runs(conn, project_id, pipeline_id, ids):
                state = await self.repo.lock_run(conn, run_id)
                if state is None or state.status is not RunStatus.FAILED:
                    continue
                graph = self.graphs.graph(state.pipeline_id, state.version, state.definition)
                node_id = first_failed(graph, state.nodes)
                if node_id is None:
                    continue
                node = graph.nodes[node_id]
                state.nodes[node_id] = NodeStatus.RUNNING
                await self.repo.change_nodes(
                    conn, state.id, [NodeChange(node_id, NodeStatus.RUNNING, started=True)]
                )
                if isinstance(node, PredictNode):
                    tags = await conn.fetchval(
                        """SELECT id FROM executions
                           WHERE pipeline_execution_id = $1 AND node_id = $2""",
                        state.id,
                        node_id,
                    )
                    if tags is not None:
                        await self.repo.requeue_execution(conn, tags)
                elif isinstance(node, TaskNode):
                    await self._send_task(conn, state, node, state.attempts.get(node_id, 0) + 1)
                await self.repo.save_run(conn, state, run_status(state.nodes))
                rerun.append(run_id)
        if rerun:
            metrics.PIPELINE_EXECUTIONS.labels(RunStatus.RUNNING.value).inc(len(rerun))
        return rerun

    # ------------------------------------------------------------------ steps

    async def _locked(
        self, conn: asyncpg.Connection, execution_id: str
    ) -> tuple[RunState, Graph, str, ExecutionStatus] | None:
        """The run a ledger execution belongs to (locked), its graph, the node and the
        execution's status."""
        tags = await self.repo.pipeline_tags(conn, execution_id)
        if tags is None:
            return None
        run_id, node_id, status = tags
        state = await self.repo.lock_run(conn, run_id)
        if state is None:
            return None
        graph = self.graphs.graph(state.pipeline_id, state.version, state.definition)
        return state, graph, node_id, status

    async def _observe(
        self,
        conn: asyncpg.Connection,
        state: RunState,
        graph: Graph,
        node_id: str,
        status: NodeStatus,
    ) -> None:
        started = await self.repo.node_started_at(conn, state.id, node_id)
        if started is not None:
            metrics.PIPELINE_NODE_LATENCY.labels(
                graph.nodes[node_id].type.value, status.value
            ).observe(max((datetime.now(UTC) - started).total_seconds(), 0.0))

    async def _fail(
        self, conn: asyncpg.Connection, state: RunState, graph: Graph, node_id: str, error: str
    ) -> None:
        await self._observe(conn, state, graph, node_id, NodeStatus.FAILED)
        state.nodes[node_id] = NodeStatus.FAILED
        await self.repo.change_nodes(
            conn, state.id, [NodeChange(node_id, NodeStatus.FAILED, error=error, finished=True)]
        )
        await self.repo.save_run(
            conn,
            state,
            RunStatus.FAILED,
            error=f"node {node_id!r} failed: {error}",
            failed_node=node_id,
        )
        metrics.PIPELINE_EXECUTIONS.labels(RunStatus.FAILED.value).inc()

    async def _succeeded(
        self,
        conn: asyncpg.Connection,
        steps: Sequence[tuple[RunState, Graph, list[str]]],
        entered: Entered,
    ) -> None:
        """Nodes just succeeded: take their out-edges, start or skip what follows, write
        the nodes, the runs, the new executions and the task commands."""
        starts: list[tuple[RunState, Graph, str]] = []
        changes: list[tuple[str, NodeChange]] = []
        for state, graph, done in steps:
            document = _document(state)
            for node_id in done:
                if state.nodes.get(node_id) is not NodeStatus.SUCCESS:
                    state.nodes[node_id] = NodeStatus.SUCCESS
                    changes.append(
                        (state.id, NodeChange(node_id, NodeStatus.SUCCESS, finished=True))
                    )
                state.taken = sorted(set(state.taken) | set(taken_edges(graph, node_id, document)))
            step = advance(graph, state.nodes, state.taken)
            for node_id in step.skip:
                state.nodes[node_id] = NodeStatus.SKIPPED
                changes.append((state.id, NodeChange(node_id, NodeStatus.SKIPPED, finished=True)))
            for node_id in step.start:
                state.nodes[node_id] = NodeStatus.RUNNING
                starts.append((state, graph, node_id))
        # One statement each for the whole batch (routing enters many items at once).
        await self.repo.change_nodes_of(conn, changes)
        await self._start(conn, starts, entered)
        saved = [(state, run_status(state.nodes)) for state, _graph, _done in steps]
        await self.repo.save_runs(conn, saved)
        for _state, status in saved:
            if status is RunStatus.SUCCESS:
                metrics.PIPELINE_EXECUTIONS.labels(status.value).inc()

    async def _start(
        self,
        conn: asyncpg.Connection,
        starts: Sequence[tuple[RunState, Graph, str]],
        entered: Entered,
    ) -> None:
        predicts = [
            (s, n) for s, g, node_id in starts if isinstance(n := g.nodes[node_id], PredictNode)
        ]
        new: list[NewExecution] = []
        by_node: dict[tuple[str, str], str] = {}
        if predicts:
            projects = sorted({s.project_id for s, _ in predicts})
            exhausted = await self.repo.exhausted_projects(conn, projects)
            services = {n.config.service_id for _, n in predicts}
            state = await scaling_state(conn, services)
            for run, node in predicts:
                execution = NewExecution(
                    project_id=run.project_id,
                    service_id=node.config.service_id,
                    item=ItemSnapshot.model_validate(run.item),
                    status=initial_status(run.project_id in exhausted),
                    cold_start=state.get(node.config.service_id, (0, 0))[1] == 0,
                    pipeline_id=run.pipeline_id,
                    pipeline_execution_id=run.id,
                    node_id=node.id,
                )
                new.append(execution)
                by_node[(run.id, node.id)] = execution.id
            await self.repo.create_executions(conn, new, state)
            entered.executions += new
        await self.repo.change_nodes_of(
            conn,
            [
                (
                    run.id,
                    NodeChange(
                        node_id,
                        NodeStatus.RUNNING,
                        execution_id=by_node.get((run.id, node_id)),
                        started=True,
                    ),
                )
                for run, _graph, node_id in starts
            ],
        )
        for run, graph, node_id in starts:
            started = graph.nodes[node_id]
            if isinstance(started, TaskNode):
                await self._send_task(conn, run, started, run.attempts.get(node_id, 0) + 1)
                entered.commands += 1

    async def _send_task(
        self, conn: asyncpg.Connection, run: RunState, node: TaskNode, attempt: int
    ) -> None:
        prediction = run.prediction or {}
        command = AddTaskItem(
            project_id=run.project_id,
            task_id=node.config.task_id,
            dataset_id=str(run.item["dataset_id"]),
            item_id=str(run.item["id"]),
            pipeline_id=run.pipeline_id,
            pipeline_execution_id=run.id,
            node_id=node.id,
            execution_id=prediction.get("execution_id"),
            service_id=prediction.get("service_id"),
            model=ModelRef.model_validate(prediction["model"]) if "model" in prediction else None,
            annotations=[
                PredictedAnnotation.model_validate(a) for a in prediction.get("annotations", [])
            ],
            auto_accept=node.config.auto_accept,
        )
        await enqueue(
            conn,
            make_event(
                command,
                source=SOURCE,
                subject=command.item_id,
                correlationid=command.execution_id or run.id,
                event_id=f"{run.id}.{node.id}.{attempt}",
            ),
            self.repo.topology.commands_exchange(ANNOTATION),
        )


def _document(state: RunState) -> dict[str, Any]:
    """The document edges are evaluated on: the item, plus the last prediction."""
    item = ItemSnapshot.model_validate(state.item).as_filter_document()
    if state.prediction is None:
        return item
    return prediction_document(item, state.prediction.get("annotations", []))


async def check_references(
    graph: Graph,
    project_id: str,
    authorization: str,
    repo: Repository,
    datasets: DatasetClient,
    tasks: TaskClient,
    models: ModelClient,
) -> None:
    """Every dataset, model service and task a pipeline names exists in the caller's
    project, every predict node's model takes the items the dataset node lets in (by
    model-serving's account of the model's input type), and every task node's task is
    on the dataset node's dataset. Raises :class:`NotFoundError` (404),
    :class:`ConflictError` (409) or :class:`PipelineError` (422) naming the node."""
    dataset = graph.dataset
    if not await datasets.has_dataset(authorization, dataset.config.dataset_id):
        raise NotFoundError(
            f"node {dataset.id!r}: dataset {dataset.config.dataset_id} does not exist "
            "in this project"
        )
    for node in graph.definition.nodes:
        if isinstance(node, PredictNode):
            status = await repo.service_in_project(project_id, node.config.service_id)
            if status is None:
                raise NotFoundError(
                    f"node {node.id!r}: model service {node.config.service_id} does not exist "
                    "in this project"
                )
            if status == "undeployed":
                raise ConflictError(
                    f"node {node.id!r}: model service {node.config.service_id} is undeployed"
                )
            await _check_input_type(graph, node, authorization, datasets, models)
        elif isinstance(node, TaskNode):
            task = await tasks.task(authorization, node.config.task_id)
            if task is None:
                raise NotFoundError(
                    f"node {node.id!r}: task {node.config.task_id} does not exist in this project"
                )
            if task.dataset_id != dataset.config.dataset_id:
                raise PipelineError(
                    f"node {node.id!r}: task {task.id} is on dataset {task.dataset_id}, not on "
                    f"dataset node {dataset.id!r}'s dataset {dataset.config.dataset_id}"
                )


async def _check_input_type(
    graph: Graph,
    node: PredictNode,
    authorization: str,
    datasets: DatasetClient,
    models: ModelClient,
) -> None:
    """The predict node's model takes what the dataset node lets in: its trigger filter
    does not pin other mimetypes, and none of the dataset's items it lets in is of a type
    the model refuses (an item uploaded later still fails alone, with its reason)."""
    input_type = await models.input_type(authorization, node.config.service_id)
    if input_type is None:
        return
    trigger = graph.dataset.config.trigger
    problem = input_type_problem(node.id, input_type, trigger)
    if problem is not None:
        raise PipelineError(problem)
    refused = refused_items_filter(input_type, trigger)
    if refused is None:
        return
    dataset_id = graph.dataset.config.dataset_id
    count, first = await datasets.first_match(authorization, dataset_id, refused)
    if count and first is not None:
        mimetype = (first.metadata.get("system") or {}).get("mimetype")
        raise PipelineError(
            f"node {node.id!r}: model service {node.config.service_id} takes {input_type} "
            f"items, but dataset {dataset_id} holds {count} item(s) the dataset node lets in "
            f"that it cannot take (such as {first.id}, {mimetype}); narrow the trigger's "
            "filter (metadata.system.mimetype) or pick another model"
        )
