"""Batches: browser-style predict requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from common.contracts import (
    ItemSnapshot,
)
from common.ids import new_id
from trigger_router_service.domain.batches import Batch
from trigger_router_service.domain.errors import NotFoundError
from trigger_router_service.domain.executions import (
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    ExecutionStatus,
    initial_status,
)
from trigger_router_service.repository.base import CANCELLED_COLUMNS, status_values
from trigger_router_service.repository.executions import (
    Executions,
    NewExecution,
)
from trigger_router_service.repository.scaling import scaling_state


class Batches(Executions):
    """Batches and their executions."""

    async def create_batch(
        self,
        project_id: str,
        service_id: str,
        selection: dict[str, Any],
        items: Sequence[ItemSnapshot],
        *,
        force: bool = False,
    ) -> Batch:
        """One execution per distinct item, their predict requests (held while the
        budget is exhausted) and a wake-up for the service, in one transaction.

        Unless ``force``, the items :meth:`already_predicted` are skipped: no execution,
        counted in the batch's ``skipped``."""
        unique = list({item.id: item for item in items}.values())
        batch_id = new_id("bat")
        async with self.pool.acquire() as conn, conn.transaction():
            done = (
                set()
                if force
                else await self.already_predicted(
                    conn, project_id, service_id, [item.id for item in unique]
                )
            )
            todo = [item for item in unique if item.id not in done]
            exhausted = bool(
                await conn.fetchval(
                    # Share-locked: a concurrent top-up waits and then releases these.
                    "SELECT exhausted FROM project_budgets WHERE project_id = $1 FOR SHARE",
                    project_id,
                )
            )
            await conn.execute(
                """INSERT INTO batches (id, project_id, service_id, selection, item_count,
                       skipped, force)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                batch_id,
                project_id,
                service_id,
                selection,
                len(unique),
                len(unique) - len(todo),
                force,
            )
            state = await scaling_state(conn, {service_id})
            status = initial_status(exhausted)
            cold = state.get(service_id, (0, 0))[1] == 0
            await self.create_executions(
                conn,
                [
                    NewExecution(project_id, service_id, item, status, cold, batch_id=batch_id)
                    for item in todo
                ],
                state,
            )
        return await self.get_batch(project_id, batch_id)

    @staticmethod
    async def already_predicted(
        conn: asyncpg.Connection, project_id: str, service_id: str, item_ids: Sequence[str]
    ) -> set[str]:
        """The items of ``item_ids`` that this service's model version already predicted.

        Decided from the router's own ledger: an item counts as predicted when the project
        has a ``success`` execution of it (from a trigger, a batch or a pipeline predict
        node) by this service, or by any service of the project whose announced
        ``model_id`` (the installed model version it serves, fixed at deploy) is this
        service's. Failed, cancelled and unfinished executions do not count."""
        if not item_ids:
            return set()
        rows = await conn.fetch(
            """SELECT DISTINCT e.item_id FROM executions e
               LEFT JOIN model_services m ON m.service_id = e.service_id
               WHERE e.project_id = $1 AND e.item_id = ANY($3::text[])
                 AND e.status = 'success'
                 AND (e.service_id = $2 OR (
                      m.project_id = $1 AND m.model_id <> '' AND m.model_id = (
                          SELECT model_id FROM model_services WHERE service_id = $2)))""",
            project_id,
            service_id,
            list(item_ids),
        )
        return {r["item_id"] for r in rows}

    async def get_batch(self, project_id: str, batch_id: str) -> Batch:
        row = await self.pool.fetchrow(
            "SELECT * FROM batches WHERE project_id = $1 AND id = $2", project_id, batch_id
        )
        if row is None:
            raise NotFoundError(f"batch {batch_id} not found")
        return await self._batch(row)

    async def list_batches(self, project_id: str, limit: int = 100) -> list[Batch]:
        rows = await self.pool.fetch(
            """SELECT * FROM batches WHERE project_id = $1
               ORDER BY created_at DESC, id DESC LIMIT $2""",
            project_id,
            limit,
        )
        return [await self._batch(r) for r in rows]

    async def _batch(self, row: asyncpg.Record) -> Batch:
        counts = {s.value: 0 for s in ExecutionStatus}
        for r in await self.pool.fetch(
            """SELECT status, count(*) AS n FROM executions WHERE batch_id = $1
               GROUP BY status""",
            row["id"],
        ):
            counts[r["status"]] = int(r["n"])
        counts["skipped"] = row["skipped"]
        finished = sum(counts[s.value] for s in FINAL_STATUSES) + row["skipped"]
        total = row["item_count"]
        return Batch(
            id=row["id"],
            project_id=row["project_id"],
            service_id=row["service_id"],
            selection=row["selection"],
            item_count=total,
            created_at=row["created_at"],
            force=row["force"],
            counts=counts,
            finished=finished,
            progress=finished / total if total else 1.0,
        )

    async def cancel_batch(self, project_id: str, batch_id: str) -> tuple[Batch, int]:
        """Cancel every unfinished execution of the batch and announce each
        (``execution.cancelled.v1``, same transaction); returns how many."""
        await self.get_batch(project_id, batch_id)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""UPDATE executions SET status = 'cancelled', finished_at = now(),
                       error = 'batch cancelled', updated_at = now()
                   WHERE project_id = $1 AND batch_id = $2
                     AND status = ANY($3::text[])
                   RETURNING {CANCELLED_COLUMNS}""",
                project_id,
                batch_id,
                status_values(CANCELLABLE_STATUSES),
            )
            await self._publish_cancels(conn, rows)
        return await self.get_batch(project_id, batch_id), len(rows)
