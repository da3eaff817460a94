"""The ``cancelled_executions`` table that model-serving and annotation each keep (in their
own schema) from ``execution.cancelled.v1``: recording a cancel and asking which
predictions were cancelled. Model-serving's table has a ``service_id`` column too."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from common.contracts import ExecutionCancelled

CLEANUP_ROWS = 100
"""Expired cancels one recorded cancel deletes (more than one: the table cannot grow
while cancels keep coming, and it does not grow without them)."""


async def record_cancel(
    conn: asyncpg.Connection,
    data: ExecutionCancelled,
    retention_seconds: float,
    *,
    with_service: bool = False,
) -> bool:
    """Remember a cancel (idempotent; the highest attempt wins) and forget cancels older
    than ``retention_seconds``; whether this one changed anything. ``with_service``: the
    table has a ``service_id`` column (model-serving's)."""
    columns = "execution_id, project_id, attempt, cancelled_at"
    values: list[object] = [data.execution_id, data.project_id, data.attempt, data.cancelled_at]
    if with_service:
        columns += ", service_id"
        values.append(data.service_id)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    changed = await conn.fetchval(
        f"""INSERT INTO cancelled_executions ({columns}) VALUES ({placeholders})
            ON CONFLICT (execution_id) DO UPDATE SET attempt = excluded.attempt,
                cancelled_at = excluded.cancelled_at, recorded_at = now()
            WHERE cancelled_executions.attempt < excluded.attempt
            RETURNING 1""",
        *values,
    )
    await conn.execute(
        """DELETE FROM cancelled_executions WHERE execution_id IN (
               SELECT execution_id FROM cancelled_executions
               WHERE recorded_at < now() - make_interval(secs => $1)
               ORDER BY recorded_at LIMIT $2)""",
        retention_seconds,
        CLEANUP_ROWS,
    )
    return changed is not None


async def cancelled_of(
    conn: asyncpg.Connection | asyncpg.Pool, predictions: Sequence[tuple[str, int | None]]
) -> set[str]:
    """Which of these (execution id, attempt) were cancelled at that attempt or a later one
    (no attempt: whenever its execution was)."""
    if not predictions:
        return set()
    rows = await conn.fetch(
        """SELECT c.execution_id FROM cancelled_executions c
           JOIN unnest($1::text[], $2::int[]) AS p(id, attempt) ON c.execution_id = p.id
           WHERE c.attempt >= coalesce(p.attempt, 0)""",
        [p[0] for p in predictions],
        [p[1] for p in predictions],
    )
    return {r["execution_id"] for r in rows}
