"""Replica meters: one row per replica, merged from its events in any order."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from billing_service.domain import meters
from billing_service.domain.errors import BillingError
from billing_service.domain.meters import ReplicaEvent, ReplicaState
from billing_service.repository.base import replica_state
from billing_service.repository.budgets import BudgetRows
from common.contracts import ReplicaStarted


class ReplicaRows(BudgetRows):
    """The ``replicas`` table; every change charges the replica's project."""

    async def apply_replica_event(self, event: ReplicaEvent, now: datetime) -> ReplicaState:
        """Merge a replica event into its replica and charge the project."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise events of one replica (start and stop arrive on two queues).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.replica_id
            )
            row = await conn.fetchrow(
                "SELECT * FROM replicas WHERE replica_id = $1", event.replica_id
            )
            current = replica_state(row) if row is not None else None
            if current is not None and current.project_id != event.project_id:
                raise BillingError(
                    f"replica {event.replica_id!r} belongs to project {current.project_id!r}"
                )
            if isinstance(event, ReplicaStarted):
                merged = meters.apply_started(current, event)
            else:
                merged = meters.apply_stopped(current, event)
            rate = meters.rate_for(merged.instance_type, self._rates)
            closed_cost = (
                meters.cost(merged.runtime_seconds(now), rate)
                if merged.start is not None and merged.stopped_at is not None
                else None
            )
            await conn.execute(
                """INSERT INTO replicas (replica_id, project_id, service_id, instance_type,
                       type_from_start, rate, started_at, started_hint, stopped_at, closed_cost)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (replica_id) DO UPDATE SET
                       instance_type = excluded.instance_type,
                       type_from_start = excluded.type_from_start, rate = excluded.rate,
                       started_at = excluded.started_at, started_hint = excluded.started_hint,
                       stopped_at = excluded.stopped_at, closed_cost = excluded.closed_cost,
                       updated_at = now()""",
                merged.replica_id,
                merged.project_id,
                merged.service_id,
                merged.instance_type,
                merged.type_from_start,
                rate,
                merged.started_at,
                merged.started_hint,
                merged.stopped_at,
                closed_cost,
            )
            await self._ensure_budget(conn, merged.project_id)
            await self._charge(conn, merged.project_id, now)
        return merged

    async def running_projects(self) -> list[str]:
        """Projects with at least one replica being metered up to now."""
        rows = await self.pool.fetch(
            """SELECT DISTINCT project_id FROM replicas WHERE stopped_at IS NULL
               AND (started_at IS NOT NULL OR started_hint IS NOT NULL)"""
        )
        return [r["project_id"] for r in rows]

    async def replicas_between(
        self, project_id: str, since: date, until: date, now: datetime
    ) -> list[tuple[ReplicaState, Decimal]]:
        """Replicas of the project metered at some time of the UTC days [since, until]."""
        start = datetime.combine(since, time.min, UTC)
        end = datetime.combine(until + timedelta(days=1), time.min, UTC)
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE project_id = $1
               AND COALESCE(started_at, started_hint) IS NOT NULL
               AND COALESCE(started_at, started_hint) < $3
               AND (stopped_at IS NULL OR stopped_at > $2)
               ORDER BY COALESCE(started_at, started_hint), replica_id""",
            project_id,
            start,
            end,
        )
        return [(replica_state(r), r["rate"]) for r in rows]

    async def running(self, project_id: str) -> list[tuple[ReplicaState, Decimal]]:
        """Replicas of the project running now, with their rates."""
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE project_id = $1 AND stopped_at IS NULL
               AND (started_at IS NOT NULL OR started_hint IS NOT NULL)
               ORDER BY replica_id""",
            project_id,
        )
        return [(replica_state(r), r["rate"]) for r in rows]
