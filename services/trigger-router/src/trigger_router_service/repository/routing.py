"""Routing's persistence: event claims, the routing view of triggers, budget states.

Each method runs on the connection of the routing transaction the use case opens
(:mod:`trigger_router_service.usecases.routing`), so claims, executions and outbox rows
commit together.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from trigger_router_service.domain.routing import TriggerRow
from trigger_router_service.repository.executions import Executions

ROUTING_CONSUMER = "trigger_router.on_item_event"
"""Consumer name of the item-event claims in ``processed_messages``."""


class Routing(Executions):
    """What routing reads and claims inside its transaction."""

    async def claim_events(self, conn: asyncpg.Connection, event_ids: Sequence[str]) -> set[str]:
        """Claim the event ids for routing; returns those not claimed before."""
        rows = await conn.fetch(
            """INSERT INTO processed_messages (consumer, message_id)
               SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id""",
            ROUTING_CONSUMER,
            list(event_ids),
        )
        return {r["message_id"] for r in rows}

    async def routing_triggers(
        self, conn: asyncpg.Connection, projects: Sequence[str]
    ) -> list[TriggerRow]:
        """The active triggers of the projects, with their service's status."""
        rows = await conn.fetch(
            """SELECT t.id, t.project_id, t.service_id, t.actions, t.execution_mode, t.filter,
                      t.updated_at, s.status AS service_status
               FROM triggers t
               LEFT JOIN model_services s
                      ON s.service_id = t.service_id AND s.project_id = t.project_id
               WHERE t.project_id = ANY($1::text[]) AND t.active AND t.status = 'active'""",
            list(projects),
        )
        return [
            TriggerRow(
                id=r["id"],
                project_id=r["project_id"],
                service_id=r["service_id"],
                actions=tuple(r["actions"]),
                execution_mode=r["execution_mode"],
                filter=r["filter"],
                updated_at=r["updated_at"],
                service_status=r["service_status"],
            )
            for r in rows
        ]

    async def exhausted_projects(
        self, conn: asyncpg.Connection, projects: Sequence[str]
    ) -> set[str]:
        """The projects whose automation budget is spent.

        The budget rows stay share-locked until the caller's transaction ends: a
        ``budget.restored.v1`` waits for it, then releases the executions it held
        (without the lock, a top-up committing meanwhile would release only the rows it
        saw and leave this transaction's new ones ``waiting-for-budget`` for good).
        """
        rows = await conn.fetch(
            """SELECT project_id, exhausted FROM project_budgets
               WHERE project_id = ANY($1::text[]) ORDER BY project_id FOR SHARE""",
            sorted(set(projects)),
        )
        return {r["project_id"] for r in rows if r["exhausted"]}
