"""Model services (deployments) and their status and scaling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from common.contracts import (
    ServiceDeployed,
    ServiceUndeployed,
)
from model_serving_service.domain.scaling import Scaling
from model_serving_service.repository.base import RepositoryBase


@dataclass(frozen=True)
class Service:
    """A model service (deployment) with its scaling settings."""

    id: str
    project_id: str
    model_id: str
    name: str
    status: str
    error: str | None
    scaling: Scaling
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Service:
        """Build from a ``services`` row."""
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            model_id=row["model_id"],
            name=row["name"],
            status=row["status"],
            error=row["error"],
            scaling=Scaling.model_validate(row["scaling"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def deployed_event(self) -> ServiceDeployed:
        """The ``service.deployed.v1`` fact for the current state (deploying/ready/failed)."""
        status = self.status if self.status in {"deploying", "ready", "failed"} else "ready"
        s = self.scaling
        return ServiceDeployed(
            service_id=self.id,
            project_id=self.project_id,
            model_id=self.model_id,
            status=status,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            queue_per_replica=s.queue_per_replica,
            cooldown_seconds=s.cooldown_seconds,
            concurrency=s.concurrency,
            instance_type=s.instance_type,
            error=self.error,
        )


class ServiceRows(RepositoryBase):
    """The ``services`` table."""

    async def insert_service(
        self,
        *,
        service_id: str,
        project_id: str,
        model_id: str,
        name: str,
        scaling: Scaling,
    ) -> Service:
        """Insert a service in ``deploying`` and emit ``service.deployed.v1``."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO services (id, project_id, model_id, name, status, scaling)
                   VALUES ($1, $2, $3, $4, 'deploying', $5) RETURNING *""",
                service_id,
                project_id,
                model_id,
                name,
                scaling.model_dump(mode="json"),
            )
            service = Service.from_row(row)
            await self._publish(conn, service.deployed_event(), service.id)
        return service

    async def get_service(self, service_id: str, project_id: str | None = None) -> Service | None:
        """A service that is not undeployed (of ``project_id`` when given)."""
        row = await self.pool.fetchrow(
            """SELECT * FROM services WHERE id = $1 AND status <> 'undeployed'
               AND ($2::text IS NULL OR project_id = $2)""",
            service_id,
            project_id,
        )
        return Service.from_row(row) if row else None

    async def list_services(self, project_id: str) -> list[Service]:
        """A project's services, newest first."""
        rows = await self.pool.fetch(
            """SELECT * FROM services WHERE project_id = $1 AND status <> 'undeployed'
               ORDER BY created_at DESC, id""",
            project_id,
        )
        return [Service.from_row(r) for r in rows]

    async def services_in(self, status: str) -> list[Service]:
        """Every service in ``status`` (start-up resumes deploys and undeploys)."""
        rows = await self.pool.fetch("SELECT * FROM services WHERE status = $1", status)
        return [Service.from_row(r) for r in rows]

    async def set_status(
        self, service_id: str, status: str, error: str | None, *, allowed_from: Sequence[str]
    ) -> Service | None:
        """Move a service to ``status`` if it is in one of ``allowed_from``.

        ``service.deployed.v1`` goes out when the new status is one other services
        know (deploying/ready/failed). None when the service was not in an allowed
        status (someone else moved it first).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE services SET status = $2, error = $3, updated_at = now(),
                       undeployed_at = CASE WHEN $2 = 'undeployed' THEN now() END
                   WHERE id = $1 AND status = ANY($4::text[]) RETURNING *""",
                service_id,
                status,
                error,
                list(allowed_from),
            )
            if row is None:
                return None
            service = Service.from_row(row)
            if status in {"deploying", "ready", "failed"}:
                await self._publish(conn, service.deployed_event(), service.id)
            elif status == "undeployed":
                await self._publish(
                    conn,
                    ServiceUndeployed(service_id=service.id, project_id=service.project_id),
                    service.id,
                )
        return service

    async def set_scaling(self, service_id: str, scaling: Scaling) -> Service | None:
        """Change a service's scaling settings and emit ``service.deployed.v1``."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE services SET scaling = $2, updated_at = now()
                   WHERE id = $1 AND status IN ('deploying', 'ready', 'failed') RETURNING *""",
                service_id,
                scaling.model_dump(mode="json"),
            )
            if row is None:
                return None
            service = Service.from_row(row)
            await self._publish(conn, service.deployed_event(), service.id)
        return service
