"""The autoscaler's view: services to scale, outstanding work, desired and actual replicas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from common.contracts import (
    ServiceScaled,
)
from common.envelope import make_event
from common.outbox import enqueue
from common.topology import TRIGGER_ROUTER
from trigger_router_service.domain.scaling import ScalingPolicy
from trigger_router_service.repository.base import SOURCE, Store


@dataclass(frozen=True)
class ScalingRow:
    """One service as the autoscaler sees it."""

    service_id: str
    project_id: str
    status: str
    policy: ScalingPolicy
    desired: int
    actual: int
    last_active_at: datetime | None
    budget_exhausted: bool


async def scaling_state(conn: asyncpg.Connection, services: set[str]) -> dict[str, tuple[int, int]]:
    """(desired, actual) replicas per service, as the autoscaler last stored them."""
    rows = await conn.fetch(
        """SELECT service_id, desired_replicas, actual_replicas FROM scaling_state
           WHERE service_id = ANY($1::text[])""",
        sorted(services),
    )
    return {r["service_id"]: (r["desired_replicas"], r["actual_replicas"]) for r in rows}


class Scaling(Store):
    """Scaling state per service."""

    async def scaling_rows(self, service_ids: Sequence[str] | None = None) -> list[ScalingRow]:
        """Services to scale: every deployed one, plus undeployed ones still holding replicas."""
        rows = await self.pool.fetch(
            """SELECT s.service_id, s.project_id, s.status, s.min_replicas, s.max_replicas,
                      s.queue_per_replica, s.cooldown_seconds, s.concurrency,
                      coalesce(st.desired_replicas, 0) AS desired,
                      coalesce(st.actual_replicas, 0) AS actual, st.last_active_at,
                      coalesce(b.exhausted, false) AS exhausted
               FROM model_services s
               LEFT JOIN scaling_state st USING (service_id)
               LEFT JOIN project_budgets b ON b.project_id = s.project_id
               WHERE ($1::text[] IS NULL OR s.service_id = ANY($1::text[]))
                 AND (s.status <> 'undeployed' OR coalesce(st.desired_replicas, 0) > 0
                      OR coalesce(st.actual_replicas, 0) > 0)
               ORDER BY s.service_id""",
            list(service_ids) if service_ids is not None else None,
        )
        return [
            ScalingRow(
                service_id=r["service_id"],
                project_id=r["project_id"],
                status=r["status"],
                policy=ScalingPolicy(
                    min_replicas=r["min_replicas"],
                    max_replicas=r["max_replicas"],
                    queue_per_replica=r["queue_per_replica"],
                    cooldown_seconds=r["cooldown_seconds"],
                    concurrency=r["concurrency"],
                ),
                desired=r["desired"],
                actual=r["actual"],
                last_active_at=r["last_active_at"],
                budget_exhausted=r["exhausted"],
            )
            for r in rows
        ]

    async def outstanding(
        self, service_ids: Sequence[str], horizon_seconds: float
    ) -> dict[str, int]:
        """Published, unfinished executions per service (queued within the horizon)."""
        # The status list restates the predicate of the partial index executions_outstanding:
        # as a parameter, a generic plan could not use that index on every reconcile.
        rows = await self.pool.fetch(
            """SELECT service_id, count(*) AS n FROM executions
               WHERE status IN ('queued', 'in-progress') AND published
                 AND service_id = ANY($1::text[])
                 AND queued_at > now() - make_interval(secs => $2)
               GROUP BY service_id""",
            list(service_ids),
            horizon_seconds,
        )
        return {r["service_id"]: int(r["n"]) for r in rows}

    async def mark_active(self, active: dict[str, str], at: datetime) -> None:
        """Record that these services (id -> project) had load at ``at``."""
        if not active:
            return
        await self.pool.execute(
            """INSERT INTO scaling_state (service_id, project_id, last_active_at)
               SELECT s, p, $3 FROM unnest($1::text[], $2::text[]) AS u(s, p)
               ON CONFLICT (service_id) DO UPDATE SET last_active_at = excluded.last_active_at,
                   updated_at = now()""",
            list(active),
            list(active.values()),
            at,
        )

    async def record_actual(self, service_id: str, project_id: str, actual: int) -> None:
        """Store the replicas the backend reports (routing uses it for the cold-start flag)."""
        await self.pool.execute(
            """INSERT INTO scaling_state (service_id, project_id, actual_replicas)
               VALUES ($1, $2, $3)
               ON CONFLICT (service_id) DO UPDATE SET actual_replicas = excluded.actual_replicas,
                   updated_at = now()""",
            service_id,
            project_id,
            actual,
        )

    async def record_scaled(
        self,
        service_id: str,
        project_id: str,
        previous: int,
        desired: int,
        load: int,
        reason: str,
        at: datetime,
    ) -> None:
        """Store a new desired replica count and emit ``service.scaled.v1`` with it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO scaling_state (service_id, project_id, desired_replicas,
                       cold_start_began_at, last_active_at)
                   VALUES ($1, $2, $3, CASE WHEN $4 = 0 AND $3 > 0 THEN $5::timestamptz END, $5)
                   ON CONFLICT (service_id) DO UPDATE SET
                       desired_replicas = excluded.desired_replicas,
                       cold_start_began_at = CASE
                           WHEN excluded.desired_replicas = 0 THEN NULL
                           WHEN $4 = 0 THEN coalesce(scaling_state.cold_start_began_at, $5)
                           ELSE scaling_state.cold_start_began_at END,
                       last_active_at = coalesce(scaling_state.last_active_at, $5),
                       updated_at = now()""",
                service_id,
                project_id,
                desired,
                previous,
                at,
            )
            await enqueue(
                conn,
                make_event(
                    ServiceScaled(
                        service_id=service_id,
                        project_id=project_id,
                        previous_replicas=previous,
                        desired_replicas=desired,
                        load=load,
                        reason=reason,
                    ),
                    source=SOURCE,
                    subject=service_id,
                    time=at,
                ),
                self.topology.events_exchange(TRIGGER_ROUTER),
            )
