"""Model services as model-serving announces them."""

from __future__ import annotations

from datetime import datetime

from common.contracts import (
    ServiceDeployed,
)
from trigger_router_service.domain.executions import UNFINISHED_STATUSES
from trigger_router_service.domain.services import ModelService
from trigger_router_service.repository.base import CANCELLED_COLUMNS, Store, status_values
from trigger_router_service.repository.triggers import fail_triggers_of


class Services(Store):
    """Model services as model-serving announces them."""

    async def service_deployed(self, data: ServiceDeployed, at: datetime) -> bool:
        """Store a service's settings unless a newer event already did; True if applied."""
        row = await self.pool.fetchval(
            """INSERT INTO model_services (service_id, project_id, model_id, status,
                   min_replicas, max_replicas, queue_per_replica, cooldown_seconds, concurrency,
                   instance_type, error, event_time)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (service_id) DO UPDATE SET
                   project_id = excluded.project_id, model_id = excluded.model_id,
                   status = excluded.status, min_replicas = excluded.min_replicas,
                   max_replicas = excluded.max_replicas,
                   queue_per_replica = excluded.queue_per_replica,
                   cooldown_seconds = excluded.cooldown_seconds,
                   concurrency = excluded.concurrency, instance_type = excluded.instance_type,
                   error = excluded.error, event_time = excluded.event_time, updated_at = now()
               WHERE model_services.event_time <= excluded.event_time
               RETURNING 1""",
            data.service_id,
            data.project_id,
            data.model_id,
            data.status,
            data.min_replicas,
            data.max_replicas,
            data.queue_per_replica,
            data.cooldown_seconds,
            data.concurrency,
            data.instance_type,
            data.error,
            at,
        )
        return row is not None

    async def service_undeployed(
        self, service_id: str, project_id: str, at: datetime
    ) -> tuple[bool, int, int]:
        """Mark a service undeployed; fail its triggers and cancel its unfinished executions
        (each announced: ``execution.cancelled.v1``, same transaction).

        Returns (applied, triggers failed, executions cancelled).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                """INSERT INTO model_services (service_id, project_id, status, event_time)
                   VALUES ($1, $2, 'undeployed', $3)
                   ON CONFLICT (service_id) DO UPDATE SET status = 'undeployed',
                       event_time = excluded.event_time, updated_at = now()
                   WHERE model_services.event_time <= excluded.event_time
                   RETURNING 1""",
                service_id,
                project_id,
                at,
            )
            if applied is None:
                return False, 0, 0
            failed = await fail_triggers_of(conn, service_id, "undeployed")
            cancelled = await conn.fetch(
                f"""UPDATE executions SET status = 'cancelled', finished_at = now(),
                       error = 'model service ' || service_id || ' was undeployed',
                       updated_at = now()
                   WHERE service_id = $1
                     AND status = ANY($2::text[])
                   RETURNING {CANCELLED_COLUMNS}""",
                service_id,
                status_values(UNFINISHED_STATUSES),
            )
            await self._publish_cancels(conn, cancelled)
            return True, len(failed), len(cancelled)

    async def service_in_project(self, project_id: str, service_id: str) -> str | None:
        """The service's status if it exists in the project, else ``None``."""
        status: str | None = await self.pool.fetchval(
            "SELECT status FROM model_services WHERE service_id = $1 AND project_id = $2",
            service_id,
            project_id,
        )
        return status

    async def list_services(
        self, project_id: str, service_id: str | None = None
    ) -> list[ModelService]:
        """The project's model services with their scaling state."""
        rows = await self.pool.fetch(
            """SELECT s.*, coalesce(st.desired_replicas, 0) AS desired_replicas,
                      coalesce(st.actual_replicas, 0) AS actual_replicas, st.last_active_at,
                      (SELECT count(*) FROM replicas r
                       WHERE r.service_id = s.service_id AND r.state = 'running')
                          AS running_replicas
               FROM model_services s LEFT JOIN scaling_state st USING (service_id)
               WHERE s.project_id = $1 AND ($2::text IS NULL OR s.service_id = $2)
               ORDER BY s.service_id""",
            project_id,
            service_id,
        )
        return [ModelService(**{k: r[k] for k in ModelService.model_fields}) for r in rows]
