"""Replicas as model-serving's workers report them."""

from __future__ import annotations

from datetime import datetime

from common.contracts import (
    ReplicaStarted,
    ReplicaStopped,
)
from trigger_router_service.repository.base import Store


class Replicas(Store):
    """Replicas of the model services."""

    async def replica_started(self, data: ReplicaStarted, at: datetime) -> float | None:
        """Record a running replica (``at``: when it reported its model loaded); returns
        seconds from its service being asked to scale up from 0 until then, when that
        applies (process start and model load)."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                """INSERT INTO replicas (replica_id, service_id, project_id, state, started_at)
                   VALUES ($1, $2, $3, 'running', $4) ON CONFLICT DO NOTHING RETURNING 1""",
                data.replica_id,
                data.service_id,
                data.project_id,
                data.started_at,
            )
            if inserted is None:
                return None
            began: datetime | None = await conn.fetchval(
                "SELECT cold_start_began_at FROM scaling_state WHERE service_id = $1",
                data.service_id,
            )
        if began is None or at < began:
            return None
        return (at - began).total_seconds()

    async def replica_stopped(self, data: ReplicaStopped) -> bool:
        """Record a stopped replica (idempotent; a late ``started`` cannot revive it)."""
        row = await self.pool.fetchval(
            """INSERT INTO replicas (replica_id, service_id, project_id, state, started_at,
                   stopped_at)
               VALUES ($1, $2, $3, 'stopped', $4, $5)
               ON CONFLICT (replica_id) DO UPDATE SET state = 'stopped',
                   stopped_at = excluded.stopped_at,
                   started_at = coalesce(replicas.started_at, excluded.started_at),
                   updated_at = now()
               WHERE replicas.state <> 'stopped'
               RETURNING 1""",
            data.replica_id,
            data.service_id,
            data.project_id,
            data.started_at,
            data.stopped_at,
        )
        return row is not None
