"""Executions: the ledger (list, count, rerun, cancel), inserts and prediction outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from common.contracts import (
    PredictionCompleted,
    PredictionFailed,
    PredictionStarted,
)
from trigger_router_service.domain.errors import ConflictError, NotFoundError
from trigger_router_service.domain.executions import (
    BULK_RERUN_STATUSES,
    CANCELLABLE_STATUSES,
    RERUNNABLE_STATUSES,
    RETRYABLE_FAILURE_STATUSES,
    STARTABLE_STATUSES,
    SUCCESS_IGNORED_STATUSES,
    UNFINISHED_STATUSES,
    Execution,
    ExecutionFilter,
    ExecutionStatus,
    NewExecution,
    initial_status,
    retry_delay,
)
from trigger_router_service.repository.base import (
    Store,
    origin_of,
    predict_request,
    status_values,
)

__all__ = ["EXECUTION_COLUMNS", "Executions", "NewExecution", "execution_where"]

EXECUTION_COLUMNS = (
    "id, project_id, service_id, trigger_id, batch_id, item_id, dataset_id, event_id, action, "
    "status, attempts, cold_start, replica_id, error, created_at, queued_at, started_at, "
    "finished_at, updated_at, pipeline_id, pipeline_execution_id, node_id"
)


def execution_where(filters: ExecutionFilter, project_id: str) -> tuple[str, list[Any]]:
    """A parameterised ``WHERE`` clause over the project's executions and its arguments."""
    clauses = ["project_id = $1"]
    args: list[Any] = [project_id]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if filters.service_id is not None:
        add("service_id = {}", filters.service_id)
    if filters.trigger_id is not None:
        add("trigger_id = {}", filters.trigger_id)
    if filters.statuses:
        add("status = ANY({}::text[])", [s.value for s in filters.statuses])
    if filters.item_id is not None:
        add("item_id = {}", filters.item_id)
    if filters.since is not None:
        add("created_at >= {}", filters.since)
    if filters.until is not None:
        add("created_at < {}", filters.until)
    return " AND ".join(clauses), args


def _execution(row: asyncpg.Record) -> Execution:
    return Execution(**{k: row[k] for k in Execution.model_fields})


class Executions(Store):
    """The executions ledger."""

    async def create_executions(
        self,
        conn: asyncpg.Connection,
        new: Sequence[NewExecution],
        state: dict[str, tuple[int, int]],
    ) -> tuple[list[asyncpg.Record], set[str]]:
        """Insert executions (the unique indexes turn duplicates away), write the predict
        requests of the queued ones to the outbox and wake their services at 0 replicas.
        Returns the inserted rows and the services woken."""
        if not new:
            return [], set()
        inserted = await conn.fetch(
            """INSERT INTO executions (id, project_id, service_id, trigger_id, batch_id, item_id,
                   dataset_id, event_id, action, once, status, published, cold_start, item,
                   queued_at, pipeline_id, pipeline_execution_id, node_id)
               SELECT i, p, s, t, b, it, d, e, a, o, st, st = 'queued', c, doc,
                      CASE WHEN st = 'queued' THEN now() END, pl, pe, nd
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::text[], $9::text[], $10::boolean[],
                           $11::text[], $12::boolean[], $13::jsonb[], $14::text[], $15::text[],
                           $16::text[])
                    AS u(i, p, s, t, b, it, d, e, a, o, st, c, doc, pl, pe, nd)
               ON CONFLICT DO NOTHING
               RETURNING id, project_id, service_id, trigger_id, batch_id, status, pipeline_id,
                         pipeline_execution_id, node_id""",
            [n.id for n in new],
            [n.project_id for n in new],
            [n.service_id for n in new],
            [n.trigger_id for n in new],
            [n.batch_id for n in new],
            [n.item.id for n in new],
            [n.item.dataset_id for n in new],
            [n.event_id for n in new],
            [n.action for n in new],
            [n.once for n in new],
            [n.status.value for n in new],
            [n.cold_start for n in new],
            [n.item.as_filter_document() for n in new],
            [n.pipeline_id for n in new],
            [n.pipeline_execution_id for n in new],
            [n.node_id for n in new],
        )
        by_id = {n.id: n for n in new}
        queued = [r for r in inserted if r["status"] == ExecutionStatus.QUEUED.value]
        await self._publish_predicts(
            conn,
            [
                predict_request(
                    r["id"],
                    r["service_id"],
                    r["project_id"],
                    by_id[r["id"]].item,
                    r["trigger_id"],
                    1,
                    origin_of(r),
                    by_id[r["id"]].blob_base64,
                )
                for r in queued
            ],
            [r["service_id"] for r in queued],
        )
        sleeping = sorted(
            {r["service_id"] for r in queued if state.get(r["service_id"], (0, 0))[0] == 0}
        )
        await self._wake(conn, sleeping)
        return list(inserted), set(sleeping)

    async def publish_rows(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> None:
        """Write the predict requests of re-queued execution rows (id, service_id,
        project_id, item, attempts and the origin columns) and wake their services."""
        await self._publish_predicts(
            conn,
            [
                predict_request(
                    r["id"],
                    r["service_id"],
                    r["project_id"],
                    r["item"],
                    r["trigger_id"],
                    r["attempts"],
                    origin_of(r),
                )
                for r in rows
            ],
            [r["service_id"] for r in rows],
        )
        await self._wake(conn, [r["service_id"] for r in rows])

    async def prediction_completed(
        self, data: PredictionCompleted, conn: asyncpg.Connection | None = None
    ) -> tuple[bool, float | None]:
        """Close an execution as ``success`` (idempotent). Returns (changed, cold-start
        seconds when this was the first prediction after a scale-up from 0). In
        ``conn``'s transaction when given."""
        (changed,), colds = await self.predictions_completed([data], conn)
        return changed, colds[0] if colds else None

    async def predictions_completed(
        self, batch: Sequence[PredictionCompleted], conn: asyncpg.Connection | None = None
    ) -> tuple[list[bool], list[float]]:
        """Close executions as ``success`` in one statement (idempotent); per prediction
        whether it changed its execution (False: closed before, or earlier in ``batch``),
        and the cold-start seconds of each service whose first prediction after a
        scale-up from 0 is among them. In ``conn``'s transaction when given.

        A service's cold start ends at its first prediction finished after it began; the
        row is cleared only if it still holds the start this statement read (a concurrent
        statement that cleared it first wins, and the start is observed once)."""
        rows = await (conn or self.pool).fetch(
            """WITH u AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[],
                                        $4::timestamptz[])
                       AS u(id, replica_id, started_at, finished_at)),
               done AS (
                   UPDATE executions e SET status = 'success', replica_id = u.replica_id,
                       started_at = u.started_at, finished_at = u.finished_at, error = NULL,
                       updated_at = now()
                   FROM u WHERE e.id = u.id AND e.status <> ALL($5::text[])
                   RETURNING e.id, e.service_id, u.finished_at),
               first AS (
                   SELECT d.service_id, s.cold_start_began_at AS began,
                          min(d.finished_at) AS first_done
                   FROM done d JOIN scaling_state s ON s.service_id = d.service_id
                   WHERE s.cold_start_began_at <= d.finished_at
                   GROUP BY d.service_id, s.cold_start_began_at),
               cold AS (
                   UPDATE scaling_state s SET cold_start_began_at = NULL FROM first f
                   WHERE s.service_id = f.service_id AND s.cold_start_began_at = f.began
                   RETURNING extract(epoch FROM f.first_done - f.began)::float8 AS seconds)
               SELECT id, NULL::float8 AS seconds FROM done
               UNION ALL SELECT NULL, seconds FROM cold""",
            [d.execution_id for d in batch],
            [d.replica_id for d in batch],
            [d.started_at for d in batch],
            [d.finished_at for d in batch],
            status_values(SUCCESS_IGNORED_STATUSES),
        )
        closed = {r["id"] for r in rows if r["id"] is not None}
        changed: list[bool] = []
        for d in batch:
            changed.append(d.execution_id in closed)
            closed.discard(d.execution_id)
        return changed, [r["seconds"] for r in rows if r["id"] is None]

    async def prediction_started(self, data: PredictionStarted) -> int:
        """Move the executions a replica started on to ``in-progress`` with its
        ``started_at`` and ``replica_id``; how many moved (0 for a redelivery).

        Only from ``queued`` or ``waiting-for-budget``, with the request published and the
        named attempt still the current one: a started event that arrives after the outcome,
        after a cancel or after the next attempt was scheduled changes nothing."""
        rows = await self.pool.fetch(
            """UPDATE executions e SET status = $1, started_at = $2, replica_id = $3,
                   updated_at = now()
               FROM unnest($4::text[], $5::int[]) AS u(id, attempt)
               WHERE e.id = u.id AND e.attempts = u.attempt AND e.published
                 AND e.project_id = $6 AND e.service_id = $7
                 AND e.status = ANY($8::text[])
               RETURNING e.id""",
            ExecutionStatus.IN_PROGRESS.value,
            data.started_at,
            data.replica_id,
            [e.execution_id for e in data.executions],
            [e.attempt for e in data.executions],
            data.project_id,
            data.service_id,
            status_values(STARTABLE_STATUSES),
        )
        return len(rows)

    async def retry_prediction(
        self, data: PredictionFailed, max_attempts: int, base_seconds: float, max_seconds: float
    ) -> bool:
        """Schedule the next attempt of an execution whose sent attempt failed for a
        passing reason, while attempts are left: it stays ``queued`` with its predict
        request held until ``retry_at`` (:meth:`release_due_retries` sends it). False when
        nothing was scheduled (attempts spent, not retryable, or a duplicate report)."""
        if not data.retryable:
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT attempts FROM executions
                   WHERE id = $1 AND published AND status = ANY($2::text[]) FOR UPDATE""",
                data.execution_id,
                status_values(RETRYABLE_FAILURE_STATUSES),
            )
            if row is None or row["attempts"] >= max_attempts:
                return False
            delay = retry_delay(row["attempts"], base_seconds, max_seconds)
            await conn.execute(
                """UPDATE executions SET status = 'queued', attempts = attempts + 1,
                       published = false, retry_at = now() + make_interval(secs => $2),
                       error = $3, replica_id = coalesce($4, replica_id), updated_at = now()
                   WHERE id = $1""",
                data.execution_id,
                delay,
                f"attempt {row['attempts']} failed, retrying in {delay:g}s: {data.reason}"[:2000],
                data.replica_id,
            )
        return True

    async def release_due_retries(self, limit: int = 500) -> int:
        """Send the predict requests of retries whose backoff is over (any replica may
        call this: rows another one is releasing are skipped); how many were sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """WITH due AS (
                       SELECT id FROM executions
                       WHERE retry_at <= now() AND status = 'queued' AND NOT published
                       ORDER BY retry_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                   UPDATE executions e SET published = true, retry_at = NULL,
                       queued_at = now(), updated_at = now()
                   FROM due WHERE e.id = due.id
                   RETURNING e.id, e.service_id, e.project_id, e.trigger_id, e.item,
                             e.attempts, e.batch_id, e.pipeline_id, e.pipeline_execution_id,
                             e.node_id""",
                limit,
            )
            if rows:
                await self.publish_rows(conn, rows)
        return len(rows)

    async def prediction_failed(self, data: PredictionFailed, at: datetime) -> bool:
        """Close an unfinished execution as ``failed`` with the reason (idempotent)."""
        row = await self.pool.fetchval(
            """UPDATE executions SET status = 'failed', error = $2,
                   replica_id = coalesce($3, replica_id), finished_at = $4, updated_at = now()
               WHERE id = $1 AND status = ANY($5::text[])
               RETURNING 1""",
            data.execution_id,
            data.reason[:2000],
            data.replica_id,
            at,
            status_values(UNFINISHED_STATUSES),
        )
        return row is not None

    async def list_executions(
        self, project_id: str, filters: ExecutionFilter, page: int, page_size: int
    ) -> tuple[list[Execution], int]:
        where, args = execution_where(filters, project_id)
        n = len(args)
        rows = await self.pool.fetch(
            f"""SELECT {EXECUTION_COLUMNS}, count(*) OVER () AS total FROM executions
                WHERE {where} ORDER BY created_at DESC, id DESC
                LIMIT ${n + 1} OFFSET ${n + 2}""",
            *args,
            page_size,
            page * page_size,
        )
        if rows:
            total = int(rows[0]["total"])
        else:
            total = int(
                await self.pool.fetchval(f"SELECT count(*) FROM executions WHERE {where}", *args)
            )
        return [_execution(r) for r in rows], total

    async def count_executions(self, project_id: str, filters: ExecutionFilter) -> dict[str, int]:
        where, args = execution_where(filters, project_id)
        rows = await self.pool.fetch(
            f"SELECT status, count(*) AS n FROM executions WHERE {where} GROUP BY status", *args
        )
        counts = {s.value: 0 for s in ExecutionStatus}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    async def get_execution(self, project_id: str, execution_id: str) -> Execution:
        row = await self.pool.fetchrow(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE project_id = $1 AND id = $2",
            project_id,
            execution_id,
        )
        if row is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return _execution(row)

    async def rerun(
        self, project_id: str, filters: ExecutionFilter, execution_id: str | None = None
    ) -> list[Execution]:
        """Run failed (or cancelled) executions again: attempt + 1, a new predict request.

        With ``execution_id`` exactly that one (404 if absent, 409 if not rerunnable);
        otherwise every failed execution matching ``filters``.
        """
        where, args = execution_where(filters, project_id)
        if execution_id is not None:
            args.append(execution_id)
            where += f" AND id = ${len(args)}"
            args.append(status_values(RERUNNABLE_STATUSES))
        else:
            args.append(status_values(BULK_RERUN_STATUSES))
        where += f" AND status = ANY(${len(args)}::text[])"
        async with self.pool.acquire() as conn, conn.transaction():
            exhausted = bool(
                await conn.fetchval(
                    # Share-locked: a concurrent top-up waits and then releases these.
                    "SELECT exhausted FROM project_budgets WHERE project_id = $1 FOR SHARE",
                    project_id,
                )
            )
            status = initial_status(exhausted)
            n = len(args)
            rows = await conn.fetch(
                f"""UPDATE executions SET status = ${n + 1}, attempts = attempts + 1,
                        published = ${n + 1} = 'queued', error = NULL, replica_id = NULL,
                        started_at = NULL, finished_at = NULL,
                        queued_at = CASE WHEN ${n + 1} = 'queued' THEN now() END,
                        updated_at = now()
                    WHERE id IN (SELECT id FROM executions WHERE {where} FOR UPDATE)
                    RETURNING {EXECUTION_COLUMNS}, item""",
                *args,
                status.value,
            )
            if execution_id is not None and not rows:
                current = await conn.fetchval(
                    "SELECT status FROM executions WHERE project_id = $1 AND id = $2",
                    project_id,
                    execution_id,
                )
                if current is None:
                    raise NotFoundError(f"execution {execution_id} not found")
                raise ConflictError(
                    f"execution {execution_id} is {current}; only failed or cancelled "
                    "executions can be rerun"
                )
            if status is ExecutionStatus.QUEUED:
                await self._publish_predicts(
                    conn,
                    [
                        predict_request(
                            r["id"],
                            r["service_id"],
                            r["project_id"],
                            r["item"],
                            r["trigger_id"],
                            r["attempts"],
                            origin_of(r),
                        )
                        for r in rows
                    ],
                    [r["service_id"] for r in rows],
                )
                await self._wake(conn, [r["service_id"] for r in rows])
        return [_execution(r) for r in rows]

    async def cancel(
        self, project_id: str, execution_id: str, conn: asyncpg.Connection | None = None
    ) -> Execution:
        """Cancel an unfinished execution and announce it (``execution.cancelled.v1`` in the
        same transaction): a worker skips its request, the annotation service discards its
        annotations, and a late outcome does not undo it. 409 once it has finished. In
        ``conn``'s transaction when given."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self.cancel(project_id, execution_id, own)
        row = await conn.fetchrow(
            f"""UPDATE executions SET status = 'cancelled', finished_at = now(),
                    error = 'cancelled by request', updated_at = now()
                WHERE project_id = $1 AND id = $2
                  AND status = ANY($3::text[])
                RETURNING {EXECUTION_COLUMNS}""",
            project_id,
            execution_id,
            status_values(CANCELLABLE_STATUSES),
        )
        if row is None:
            current = await conn.fetchval(
                "SELECT status FROM executions WHERE project_id = $1 AND id = $2",
                project_id,
                execution_id,
            )
            if current is None:
                raise NotFoundError(f"execution {execution_id} not found")
            raise ConflictError(f"execution {execution_id} is {current}; it cannot be cancelled")
        await self._publish_cancels(conn, [row])
        return _execution(row)
