"""Project budgets from billing: exhausted holds predict requests, restored releases them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trigger_router_service.repository.base import Store, origin_of, predict_request


@dataclass(frozen=True)
class Released:
    """Executions a ``budget.restored.v1`` released."""

    published: int
    requeued: int
    services: set[str]


class Budgets(Store):
    """Budget states per project."""

    async def budget_changed(
        self, project_id: str, exhausted: bool, at: datetime
    ) -> tuple[bool, int, Released | None]:
        """Record a budget state unless a newer one is stored.

        Exhausted: queued executions of the project show ``waiting-for-budget``.
        Restored: every waiting execution goes back to ``queued``; those whose predict
        request was held are published now, and their services are woken.
        Returns (applied, executions now waiting, what a restore released).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                """INSERT INTO project_budgets (project_id, exhausted, event_time)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (project_id) DO UPDATE SET exhausted = excluded.exhausted,
                       event_time = excluded.event_time, updated_at = now()
                   WHERE project_budgets.event_time <= excluded.event_time
                   RETURNING 1""",
                project_id,
                exhausted,
                at,
            )
            if applied is None:
                return False, 0, None
            if exhausted:
                rows = await conn.fetch(
                    """UPDATE executions SET status = 'waiting-for-budget', updated_at = now()
                       WHERE project_id = $1 AND status = 'queued' RETURNING id""",
                    project_id,
                )
                return True, len(rows), None
            rows = await conn.fetch(
                """WITH w AS (
                       SELECT id, published FROM executions
                       WHERE project_id = $1 AND status = 'waiting-for-budget' FOR UPDATE)
                   UPDATE executions e SET status = 'queued', published = true,
                       queued_at = CASE WHEN w.published THEN e.queued_at ELSE now() END,
                       updated_at = now()
                   FROM w WHERE e.id = w.id
                   RETURNING e.id, e.service_id, e.project_id, e.trigger_id, e.item, e.attempts,
                             e.batch_id, e.pipeline_id, e.pipeline_execution_id, e.node_id,
                             w.published AS was_published""",
                project_id,
            )
            held = [r for r in rows if not r["was_published"]]
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
                    for r in held
                ],
                [r["service_id"] for r in held],
            )
            services = {r["service_id"] for r in rows}
            await self._wake(conn, sorted(services))
            return True, 0, Released(len(held), len(rows) - len(held), services)
