"""Pipelines, their versions, pipeline executions and the status of each node in them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from common.ids import new_id
from trigger_router_service.domain.errors import ConflictError, NotFoundError
from trigger_router_service.domain.executions import ExecutionStatus
from trigger_router_service.domain.pipelines import (
    NodeRun,
    NodeStatus,
    Pipeline,
    PipelineDefinition,
    PipelineExecution,
    PipelineStatus,
    RunStatus,
)
from trigger_router_service.repository.executions import Executions


@dataclass(frozen=True)
class PipelineRow:
    """A running pipeline as routing sees it (its current version's definition)."""

    id: str
    project_id: str
    version: int
    definition: dict[str, Any]
    started_at: datetime | None = None
    """When it last started: item events from before then do not enter it."""


@dataclass(frozen=True)
class NewRun:
    """A pipeline execution about to be inserted, with the first status of each node."""

    pipeline_id: str
    project_id: str
    version: int
    item: dict[str, Any]
    item_id: str
    dataset_id: str
    nodes: dict[str, tuple[str, NodeStatus]]
    """node id -> (type, status)."""
    event_id: str | None = None
    run_id: str | None = None
    once: bool = False
    id: str = field(default_factory=lambda: new_id("pex"))


@dataclass
class RunState:
    """A pipeline execution locked for a change, with its nodes and its version."""

    id: str
    pipeline_id: str
    project_id: str
    version: int
    definition: dict[str, Any]
    status: RunStatus
    item: dict[str, Any]
    prediction: dict[str, Any] | None
    taken: list[int]
    nodes: dict[str, NodeStatus]
    attempts: dict[str, int]


@dataclass(frozen=True)
class NodeChange:
    """A node's new status in one pipeline execution."""

    node_id: str
    status: NodeStatus
    execution_id: str | None = None
    error: str | None = None
    started: bool = False
    """Sets ``started_at`` (and counts an attempt)."""
    finished: bool = False
    """Sets ``finished_at``."""


NODE_COLUMNS = "node_id, node_type, status, execution_id, error, attempts, started_at, finished_at"


class Pipelines(Executions):
    """Pipelines and their executions."""

    # ------------------------------------------------------------------ pipelines

    async def create_pipeline(
        self, project_id: str, definition: PipelineDefinition, dataset_id: str
    ) -> Pipeline:
        pipeline_id = new_id("pln")
        body = definition.model_dump(mode="json")
        try:
            async with self.transaction() as conn:
                await conn.execute(
                    """INSERT INTO pipelines (id, project_id, name, definition, dataset_id)
                       VALUES ($1, $2, $3, $4, $5)""",
                    pipeline_id,
                    project_id,
                    definition.name,
                    body,
                    dataset_id,
                )
                await conn.execute(
                    """INSERT INTO pipeline_versions (pipeline_id, version, definition)
                       VALUES ($1, 1, $2)""",
                    pipeline_id,
                    body,
                )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(
                f"a pipeline named {definition.name!r} already exists in this project"
            ) from exc
        return await self.get_pipeline(project_id, pipeline_id)

    async def update_pipeline(
        self, project_id: str, pipeline_id: str, definition: PipelineDefinition, dataset_id: str
    ) -> Pipeline:
        """A new version of a pipeline that is not running."""
        body = definition.model_dump(mode="json")
        try:
            async with self.transaction() as conn:
                version = await conn.fetchval(
                    """UPDATE pipelines SET version = version + 1, name = $3, definition = $4,
                           dataset_id = $5, updated_at = now()
                       WHERE project_id = $1 AND id = $2 AND status <> 'running'
                       RETURNING version""",
                    project_id,
                    pipeline_id,
                    definition.name,
                    body,
                    dataset_id,
                )
                if version is None:
                    await self._explain(conn, project_id, pipeline_id, "update")
                await conn.execute(
                    """INSERT INTO pipeline_versions (pipeline_id, version, definition)
                       VALUES ($1, $2, $3)""",
                    pipeline_id,
                    version,
                    body,
                )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(
                f"a pipeline named {definition.name!r} already exists in this project"
            ) from exc
        return await self.get_pipeline(project_id, pipeline_id)

    async def _explain(
        self, conn: asyncpg.Connection, project_id: str, pipeline_id: str, action: str
    ) -> None:
        status = await conn.fetchval(
            "SELECT status FROM pipelines WHERE project_id = $1 AND id = $2",
            project_id,
            pipeline_id,
        )
        if status is None:
            raise NotFoundError(f"pipeline {pipeline_id} not found")
        raise ConflictError(f"pipeline {pipeline_id} is {status}; stop it before you {action} it")

    async def set_pipeline_status(
        self, project_id: str, pipeline_id: str, status: PipelineStatus
    ) -> Pipeline:
        """Start (``running``) or stop (``stopped``) a pipeline (idempotent)."""
        row = await self.pool.fetchval(
            """UPDATE pipelines SET status = $3, updated_at = now(),
                   started_at = CASE WHEN $3 = 'running' AND status <> 'running' THEN now()
                                     ELSE started_at END,
                   stopped_at = CASE WHEN $3 = 'stopped' AND status = 'running' THEN now()
                                     ELSE stopped_at END
               WHERE project_id = $1 AND id = $2 RETURNING 1""",
            project_id,
            pipeline_id,
            status.value,
        )
        if row is None:
            raise NotFoundError(f"pipeline {pipeline_id} not found")
        return await self.get_pipeline(project_id, pipeline_id)

    async def delete_pipeline(self, project_id: str, pipeline_id: str) -> None:
        """Delete a pipeline that is not running, with its executions (the ledger's
        executions of its predict nodes stay)."""
        async with self.transaction() as conn:
            deleted = await conn.fetchval(
                """DELETE FROM pipelines WHERE project_id = $1 AND id = $2
                     AND status <> 'running' RETURNING 1""",
                project_id,
                pipeline_id,
            )
            if deleted is None:
                await self._explain(conn, project_id, pipeline_id, "delete")

    async def get_pipeline(self, project_id: str, pipeline_id: str) -> Pipeline:
        row = await self.pool.fetchrow(
            "SELECT * FROM pipelines WHERE project_id = $1 AND id = $2", project_id, pipeline_id
        )
        if row is None:
            raise NotFoundError(f"pipeline {pipeline_id} not found")
        return await self._pipeline(row)

    async def list_pipelines(self, project_id: str) -> list[Pipeline]:
        rows = await self.pool.fetch(
            "SELECT * FROM pipelines WHERE project_id = $1 ORDER BY created_at, id", project_id
        )
        return [await self._pipeline(r) for r in rows]

    async def _pipeline(self, row: asyncpg.Record) -> Pipeline:
        definition = PipelineDefinition.model_validate(row["definition"])
        counts = {n.id: {s.value: 0 for s in NodeStatus} for n in definition.nodes}
        for r in await self.pool.fetch(
            """SELECT node_id, status, count(*) AS n FROM pipeline_nodes
               WHERE pipeline_id = $1 GROUP BY node_id, status""",
            row["id"],
        ):
            counts.setdefault(r["node_id"], {s.value: 0 for s in NodeStatus})
            counts[r["node_id"]][r["status"]] = int(r["n"])
        runs = {s.value: 0 for s in RunStatus}
        for r in await self.pool.fetch(
            """SELECT status, count(*) AS n FROM pipeline_executions
               WHERE pipeline_id = $1 GROUP BY status""",
            row["id"],
        ):
            runs[r["status"]] = int(r["n"])
        return Pipeline(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            version=row["version"],
            status=PipelineStatus(row["status"]),
            definition=definition,
            counts=counts,
            executions=runs,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            stopped_at=row["stopped_at"],
        )

    async def running_pipelines(
        self, conn: asyncpg.Connection, projects: Sequence[str]
    ) -> list[PipelineRow]:
        """The running pipelines of the projects (routing lets items into them)."""
        rows = await conn.fetch(
            """SELECT id, project_id, version, definition, started_at FROM pipelines
               WHERE status = 'running' AND project_id = ANY($1::text[])""",
            list(projects),
        )
        return [
            PipelineRow(r["id"], r["project_id"], r["version"], r["definition"], r["started_at"])
            for r in rows
        ]

    async def pipeline_row(self, project_id: str, pipeline_id: str) -> PipelineRow:
        """A pipeline's current version (any status)."""
        row = await self.pool.fetchrow(
            """SELECT id, project_id, version, definition FROM pipelines
               WHERE project_id = $1 AND id = $2""",
            project_id,
            pipeline_id,
        )
        if row is None:
            raise NotFoundError(f"pipeline {pipeline_id} not found")
        return PipelineRow(row["id"], row["project_id"], row["version"], row["definition"])

    # ------------------------------------------------------------------ executions

    async def insert_runs(self, conn: asyncpg.Connection, runs: Sequence[NewRun]) -> set[str]:
        """Insert pipeline executions and their nodes; the unique indexes turn away a second
        entry per event, per run request, and per item for ``Once``. Returns the ids
        inserted."""
        if not runs:
            return set()
        rows = await conn.fetch(
            """INSERT INTO pipeline_executions (id, pipeline_id, project_id, version, item_id,
                   dataset_id, event_id, run_id, once, item)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[],
                   $5::text[], $6::text[], $7::text[], $8::text[], $9::boolean[], $10::jsonb[])
               ON CONFLICT DO NOTHING RETURNING id""",
            [r.id for r in runs],
            [r.pipeline_id for r in runs],
            [r.project_id for r in runs],
            [r.version for r in runs],
            [r.item_id for r in runs],
            [r.dataset_id for r in runs],
            [r.event_id for r in runs],
            [r.run_id for r in runs],
            [r.once for r in runs],
            [r.item for r in runs],
        )
        inserted = {r["id"] for r in rows}
        nodes = [
            (r.id, node_id, r.pipeline_id, kind, status.value)
            for r in runs
            if r.id in inserted
            for node_id, (kind, status) in r.nodes.items()
        ]
        if nodes:
            await conn.execute(
                """INSERT INTO pipeline_nodes (pipeline_execution_id, node_id, pipeline_id,
                       node_type, status, started_at, finished_at)
                   SELECT e, n, p, t, s, CASE WHEN s <> 'pending' THEN now() END,
                          CASE WHEN s IN ('success', 'skipped') THEN now() END
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                        AS u(e, n, p, t, s)""",
                [n[0] for n in nodes],
                [n[1] for n in nodes],
                [n[2] for n in nodes],
                [n[3] for n in nodes],
                [n[4] for n in nodes],
            )
        return inserted

    async def lock_run(self, conn: asyncpg.Connection, run_id: str) -> RunState | None:
        """A pipeline execution, locked for this transaction, with its nodes."""
        row = await conn.fetchrow(
            """SELECT e.*, v.definition FROM pipeline_executions e
               JOIN pipeline_versions v ON v.pipeline_id = e.pipeline_id
                                       AND v.version = e.version
               WHERE e.id = $1 FOR UPDATE OF e""",
            run_id,
        )
        if row is None:
            return None
        nodes = await conn.fetch(
            "SELECT node_id, status, attempts FROM pipeline_nodes WHERE pipeline_execution_id = $1",
            run_id,
        )
        return RunState(
            id=row["id"],
            pipeline_id=row["pipeline_id"],
            project_id=row["project_id"],
            version=row["version"],
            definition=row["definition"],
            status=RunStatus(row["status"]),
            item=row["item"],
            prediction=row["prediction"],
            taken=list(row["taken"]),
            nodes={n["node_id"]: NodeStatus(n["status"]) for n in nodes},
            attempts={n["node_id"]: n["attempts"] for n in nodes},
        )

    async def change_nodes(
        self, conn: asyncpg.Connection, run_id: str, changes: Sequence[NodeChange]
    ) -> None:
        """Write node status changes of one pipeline execution."""
        await self.change_nodes_of(conn, [(run_id, c) for c in changes])

    async def change_nodes_of(
        self, conn: asyncpg.Connection, changes: Sequence[tuple[str, NodeChange]]
    ) -> None:
        """Write node status changes of any number of pipeline executions at once
        (``(run id, change)`` pairs), in one statement."""
        if not changes:
            return
        await conn.execute(
            """UPDATE pipeline_nodes n SET status = c.s,
                   execution_id = coalesce(c.x, n.execution_id),
                   error = CASE WHEN c.s = 'failed' THEN c.err
                                WHEN c.s = 'running' THEN NULL ELSE n.error END,
                   attempts = n.attempts + CASE WHEN c.st THEN 1 ELSE 0 END,
                   started_at = CASE WHEN c.st THEN now() ELSE n.started_at END,
                   finished_at = CASE WHEN c.fin THEN now()
                                      WHEN c.st THEN NULL ELSE n.finished_at END
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::boolean[], $7::boolean[]) AS c(run, node, s, x, err, st, fin)
               WHERE n.pipeline_execution_id = c.run AND n.node_id = c.node""",
            [run_id for run_id, _ in changes],
            [c.node_id for _, c in changes],
            [c.status.value for _, c in changes],
            [c.execution_id for _, c in changes],
            [c.error[:2000] if c.error else None for _, c in changes],
            [c.started for _, c in changes],
            [c.finished for _, c in changes],
        )

    async def node_started_at(
        self, conn: asyncpg.Connection, run_id: str, node_id: str
    ) -> datetime | None:
        started: datetime | None = await conn.fetchval(
            """SELECT started_at FROM pipeline_nodes
               WHERE pipeline_execution_id = $1 AND node_id = $2""",
            run_id,
            node_id,
        )
        return started

    async def save_run(
        self,
        conn: asyncpg.Connection,
        run: RunState,
        status: RunStatus,
        *,
        error: str | None = None,
        failed_node: str | None = None,
    ) -> None:
        """Store a pipeline execution's status, edges taken and last prediction."""
        await conn.execute(
            """UPDATE pipeline_executions SET status = $2, error = $3, failed_node = $4,
                   taken = $5, prediction = $6, updated_at = now(),
                   finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END
               WHERE id = $1""",
            run.id,
            status.value,
            error[:2000] if error else None,
            failed_node,
            sorted(set(run.taken)),
            run.prediction,
        )

    async def save_runs(
        self, conn: asyncpg.Connection, runs: Sequence[tuple[RunState, RunStatus]]
    ) -> None:
        """:meth:`save_run` (without an error) for many pipeline executions, in one
        statement."""
        if not runs:
            return
        await conn.execute(
            """UPDATE pipeline_executions e SET status = c.s, error = NULL, failed_node = NULL,
                   taken = ARRAY(SELECT jsonb_array_elements_text(c.taken::jsonb)::integer),
                   prediction = c.prediction, updated_at = now(),
                   finished_at = CASE WHEN c.s = 'running' THEN NULL ELSE now() END
               FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                    AS c(id, s, taken, prediction)
               WHERE e.id = c.id""",
            [run.id for run, _ in runs],
            [status.value for _, status in runs],
            # Text, not jsonb: asyncpg would read a list of lists as a 2-D array.
            [json.dumps(sorted(set(run.taken))) for run, _ in runs],
            [run.prediction for run, _ in runs],
        )

    async def pipeline_tags(
        self, conn: asyncpg.Connection, execution_id: str
    ) -> tuple[str, str, ExecutionStatus] | None:
        """The (pipeline execution, node) that created a ledger execution, if any, and the
        execution's status."""
        row = await conn.fetchrow(
            """SELECT pipeline_execution_id, node_id, status FROM executions
               WHERE id = $1 AND pipeline_execution_id IS NOT NULL""",
            execution_id,
        )
        if row is None:
            return None
        return row["pipeline_execution_id"], row["node_id"], ExecutionStatus(row["status"])

    async def failed_runs(
        self, conn: asyncpg.Connection, project_id: str, pipeline_id: str, ids: Sequence[str] | None
    ) -> list[str]:
        """Failed pipeline executions of a pipeline (all, or those of ``ids``)."""
        rows = await conn.fetch(
            """SELECT id FROM pipeline_executions
               WHERE project_id = $1 AND pipeline_id = $2 AND status = 'failed'
                 AND ($3::text[] IS NULL OR id = ANY($3::text[]))
               ORDER BY created_at, id""",
            project_id,
            pipeline_id,
            list(ids) if ids is not None else None,
        )
        return [r["id"] for r in rows]

    async def list_runs(
        self,
        project_id: str,
        pipeline_id: str,
        *,
        status: RunStatus | None,
        node_id: str | None,
        node_status: NodeStatus | None,
        page: int,
        page_size: int,
    ) -> tuple[list[PipelineExecution], int]:
        """Pipeline executions, newest first; ``node_id``/``node_status`` pick those with
        that node (in that status)."""
        rows = await self.pool.fetch(
            """SELECT e.*, count(*) OVER () AS total FROM pipeline_executions e
               WHERE e.project_id = $1 AND e.pipeline_id = $2
                 AND ($3::text IS NULL OR e.status = $3)
                 AND ($4::text IS NULL AND $5::text IS NULL OR EXISTS (
                     SELECT 1 FROM pipeline_nodes n WHERE n.pipeline_execution_id = e.id
                       AND ($4::text IS NULL OR n.node_id = $4)
                       AND ($5::text IS NULL OR n.status = $5)))
               ORDER BY e.created_at DESC, e.id DESC LIMIT $6 OFFSET $7""",
            project_id,
            pipeline_id,
            status.value if status else None,
            node_id,
            node_status.value if node_status else None,
            page_size,
            page * page_size,
        )
        total = int(rows[0]["total"]) if rows else 0
        if not rows and page > 0:
            total = int(
                await self.pool.fetchval(
                    "SELECT count(*) FROM pipeline_executions WHERE pipeline_id = $1", pipeline_id
                )
            )
        nodes: dict[str, list[NodeRun]] = {r["id"]: [] for r in rows}
        for n in await self.pool.fetch(
            f"""SELECT pipeline_execution_id, {NODE_COLUMNS} FROM pipeline_nodes
                WHERE pipeline_execution_id = ANY($1::text[]) ORDER BY node_id""",
            list(nodes),
        ):
            nodes[n["pipeline_execution_id"]].append(
                NodeRun(
                    node_id=n["node_id"],
                    type=n["node_type"],
                    status=n["status"],
                    execution_id=n["execution_id"],
                    error=n["error"],
                    attempts=n["attempts"],
                    started_at=n["started_at"],
                    finished_at=n["finished_at"],
                )
            )
        return [
            PipelineExecution(
                id=r["id"],
                pipeline_id=r["pipeline_id"],
                project_id=r["project_id"],
                version=r["version"],
                item_id=r["item_id"],
                dataset_id=r["dataset_id"],
                event_id=r["event_id"],
                status=r["status"],
                error=r["error"],
                failed_node=r["failed_node"],
                nodes=nodes[r["id"]],
                created_at=r["created_at"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ], total

    async def requeue_execution(self, conn: asyncpg.Connection, execution_id: str) -> None:
        """Run a predict node's ledger execution again (attempt + 1, a new predict request)
        inside the caller's transaction."""
        exhausted = bool(
            await conn.fetchval(
                """SELECT b.exhausted FROM project_budgets b JOIN executions e
                   ON e.project_id = b.project_id WHERE e.id = $1 FOR SHARE OF b""",
                execution_id,
            )
        )
        rows = await conn.fetch(
            """UPDATE executions SET status = $2, attempts = attempts + 1,
                   published = $2 = 'queued', error = NULL, replica_id = NULL,
                   started_at = NULL, finished_at = NULL,
                   queued_at = CASE WHEN $2 = 'queued' THEN now() END, updated_at = now()
               WHERE id = $1
               RETURNING id, service_id, project_id, trigger_id, batch_id, item, attempts,
                         pipeline_id, pipeline_execution_id, node_id""",
            execution_id,
            "waiting-for-budget" if exhausted else "queued",
        )
        if rows and not exhausted:
            await self.publish_rows(conn, rows)
