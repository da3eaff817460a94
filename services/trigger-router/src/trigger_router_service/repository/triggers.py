"""Triggers: CRUD, and failing the triggers of a service that went away."""

from __future__ import annotations

import asyncpg

from common.ids import new_id
from trigger_router_service.domain.errors import ConflictError, NotFoundError
from trigger_router_service.domain.triggers import (
    Trigger,
    TriggerSpec,
)
from trigger_router_service.repository.base import Store


def _trigger(row: asyncpg.Record) -> Trigger:
    return Trigger(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        active=row["active"],
        status=row["status"],
        status_reason=row["status_reason"],
        spec=TriggerSpec(
            resource=row["resource"],
            actions=list(row["actions"]),
            execution_mode=row["execution_mode"],
            filter=row["filter"],
            operation={"type": row["operation_type"], "service_id": row["service_id"]},
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def fail_triggers_of(conn: asyncpg.Connection, service_id: str, why: str) -> list[str]:
    """Fail the active triggers of a service that went away; returns their ids."""
    rows = await conn.fetch(
        """UPDATE triggers SET status = 'failed', status_reason = $2, updated_at = now()
           WHERE service_id = $1 AND status = 'active' RETURNING id""",
        service_id,
        f"model service {service_id} was {why}; the trigger no longer runs",
    )
    return [r["id"] for r in rows]


class Triggers(Store):
    """Triggers of the projects."""

    async def create_trigger(
        self, project_id: str, name: str, active: bool, spec: TriggerSpec
    ) -> Trigger:
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO triggers (id, project_id, name, active, resource, actions,
                       execution_mode, filter, operation_type, service_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
                new_id("trg"),
                project_id,
                name,
                active,
                spec.resource,
                [a.value for a in spec.actions],
                spec.execution_mode.value,
                spec.filter,
                spec.operation.type,
                spec.operation.service_id,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a trigger named {name!r} already exists in this project") from exc
        return _trigger(row)

    async def list_triggers(
        self, project_id: str, service_id: str | None = None, active: bool | None = None
    ) -> list[Trigger]:
        rows = await self.pool.fetch(
            """SELECT * FROM triggers WHERE project_id = $1
                 AND ($2::text IS NULL OR service_id = $2)
                 AND ($3::boolean IS NULL OR active = $3)
               ORDER BY created_at, id""",
            project_id,
            service_id,
            active,
        )
        return [_trigger(r) for r in rows]

    async def get_trigger(self, project_id: str, trigger_id: str) -> Trigger:
        row = await self.pool.fetchrow(
            "SELECT * FROM triggers WHERE project_id = $1 AND id = $2", project_id, trigger_id
        )
        if row is None:
            raise NotFoundError(f"trigger {trigger_id} not found")
        return _trigger(row)

    async def update_trigger(
        self,
        project_id: str,
        trigger_id: str,
        *,
        name: str | None = None,
        active: bool | None = None,
        spec: TriggerSpec | None = None,
        revive: bool = False,
    ) -> Trigger:
        """Change a trigger; ``revive`` clears a ``failed`` status (its service is back)."""
        try:
            row = await self.pool.fetchrow(
                """UPDATE triggers SET
                       name = coalesce($3, name),
                       active = coalesce($4, active),
                       resource = coalesce($5, resource),
                       actions = coalesce($6, actions),
                       execution_mode = coalesce($7, execution_mode),
                       filter = coalesce($8, filter),
                       operation_type = coalesce($9, operation_type),
                       service_id = coalesce($10, service_id),
                       status = CASE WHEN $11 THEN 'active' ELSE status END,
                       status_reason = CASE WHEN $11 THEN NULL ELSE status_reason END,
                       updated_at = now()
                   WHERE project_id = $1 AND id = $2 RETURNING *""",
                project_id,
                trigger_id,
                name,
                active,
                spec.resource if spec else None,
                [a.value for a in spec.actions] if spec else None,
                spec.execution_mode.value if spec else None,
                spec.filter if spec else None,
                spec.operation.type if spec else None,
                spec.operation.service_id if spec else None,
                revive,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a trigger named {name!r} already exists in this project") from exc
        if row is None:
            raise NotFoundError(f"trigger {trigger_id} not found")
        return _trigger(row)

    async def delete_trigger(self, project_id: str, trigger_id: str) -> None:
        """Delete a trigger; its executions stay in the ledger."""
        deleted = await self.pool.fetchval(
            "DELETE FROM triggers WHERE project_id = $1 AND id = $2 RETURNING 1",
            project_id,
            trigger_id,
        )
        if deleted is None:
            raise NotFoundError(f"trigger {trigger_id} not found")
