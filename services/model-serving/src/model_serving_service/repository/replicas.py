"""Replicas of model services and their ``replica.*`` events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from common.contracts import (
    ReplicaStarted,
    ReplicaStopped,
)
from common.envelope import make_event
from common.outbox import enqueue
from model_serving_service.domain.outcomes import SOURCE
from model_serving_service.repository.base import RepositoryBase
from model_serving_service.repository.services import Service


@dataclass(frozen=True)
class Replica:
    """One predict worker process."""

    id: str
    service_id: str
    state: str
    host: str | None
    pid: int | None
    started_at: datetime
    ready_at: datetime | None
    seen_at: datetime
    stopped_at: datetime | None
    error: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Replica:
        """Build from a ``replicas`` row."""
        return cls(
            id=row["id"],
            service_id=row["service_id"],
            state=row["state"],
            host=row["host"],
            pid=row["pid"],
            started_at=row["started_at"],
            ready_at=row["ready_at"],
            seen_at=row["seen_at"],
            stopped_at=row["stopped_at"],
            error=row["error"],
        )


class ReplicaRows(RepositoryBase):
    """The ``replicas`` table."""

    async def insert_replica(
        self,
        *,
        replica_id: str,
        service: Service,
        host: str,
        pid: int,
        started_at: datetime,
    ) -> None:
        """Record a replica that is starting."""
        await self.pool.execute(
            """INSERT INTO replicas (id, service_id, project_id, instance_type, state, host,
                                     pid, started_at)
               VALUES ($1, $2, $3, $4, 'starting', $5, $6, $7)
               ON CONFLICT (id) DO UPDATE SET state = 'starting', host = $5, pid = $6,
                   started_at = $7, seen_at = now(), stopped_at = NULL, error = NULL""",
            replica_id,
            service.id,
            service.project_id,
            service.scaling.instance_type,
            host,
            pid,
            started_at,
        )

    async def replica_running(self, replica_id: str) -> Replica | None:
        """Mark a replica running (its model is loaded) and emit ``replica.started.v1``."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE replicas SET state = 'running', ready_at = now(), seen_at = now()
                   WHERE id = $1 AND state = 'starting' RETURNING *""",
                replica_id,
            )
            if row is None:
                return None
            await self._publish(
                conn,
                ReplicaStarted(
                    replica_id=row["id"],
                    service_id=row["service_id"],
                    project_id=row["project_id"],
                    instance_type=row["instance_type"],
                    started_at=row["started_at"],
                ),
                row["service_id"],
            )
        return Replica.from_row(row)

    async def replica_seen(self, replica_id: str) -> bool:
        """Heartbeat of a live replica. A replica the janitor marked ``lost`` while its
        heartbeats could not reach the database (an outage longer than the horizon) is
        alive after all: it is ``starting``/``running`` again; True then.

        Billing already got a ``replica.stopped.v1`` for it (at its last heartbeat then);
        its real stop later sends another one, and billing keeps the latest stop: the
        runtime between the two is billed then.
        """
        revived = await self.pool.fetchval(
            """WITH old AS (SELECT id, state FROM replicas WHERE id = $1 FOR UPDATE)
               UPDATE replicas r SET seen_at = now(),
                   state = CASE WHEN old.state <> 'lost' THEN r.state
                                WHEN r.ready_at IS NULL THEN 'starting' ELSE 'running' END,
                   stopped_at = CASE WHEN old.state = 'lost' THEN NULL ELSE r.stopped_at END,
                   error = CASE WHEN old.state = 'lost' THEN NULL ELSE r.error END
               FROM old WHERE r.id = old.id
                   AND (r.stopped_at IS NULL OR old.state = 'lost')
               RETURNING old.state = 'lost'""",
            replica_id,
        )
        return bool(revived)

    async def replica_stopped(
        self, replica_id: str, *, state: str = "stopped", error: str | None = None
    ) -> str | None:
        """Mark a replica stopped; emit ``replica.stopped.v1`` if it had started.

        Returns the id of the emitted event (None when nothing was emitted).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE replicas SET state = $2, error = $3, stopped_at = now()
                   WHERE id = $1 AND stopped_at IS NULL
                   RETURNING *, (ready_at IS NOT NULL) AS started""",
                replica_id,
                state,
                error,
            )
            if row is None or not row["started"]:
                return None
            return await self._replica_stopped_event(conn, row, row["stopped_at"])

    async def _replica_stopped_event(
        self, conn: asyncpg.Connection, row: asyncpg.Record, stopped_at: datetime
    ) -> str:
        event = make_event(
            ReplicaStopped(
                replica_id=row["id"],
                service_id=row["service_id"],
                project_id=row["project_id"],
                instance_type=row["instance_type"],
                started_at=row["started_at"],
                stopped_at=stopped_at,
            ),
            source=SOURCE,
            subject=row["service_id"],
        )
        await enqueue(conn, event, self.events_exchange)
        return event.id

    async def expire_lost_replicas(
        self, stale_seconds: float, heartbeat_seconds: float = 0.0
    ) -> list[str]:
        """Replicas whose heartbeat stopped (killed without draining) become ``lost``.

        Billing needs a stop for every start: ``replica.stopped.v1`` is emitted with the
        time of the first heartbeat the replica missed (last heartbeat +
        ``heartbeat_seconds``, at most now) as the stop time: it died in between, and the
        last heartbeat alone under-billed every killed replica by up to one interval.
        """
        lost: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE replicas SET state = 'lost',
                       stopped_at = LEAST(seen_at + make_interval(secs => $2), now()),
                       error = 'heartbeat stopped'
                   WHERE stopped_at IS NULL AND seen_at < now() - make_interval(secs => $1)
                   RETURNING *, (ready_at IS NOT NULL) AS started""",
                stale_seconds,
                heartbeat_seconds,
            )
            for row in rows:
                lost.append(row["id"])
                if row["started"]:
                    await self._replica_stopped_event(conn, row, row["stopped_at"])
        return lost

    async def active_replicas(self, service_id: str) -> list[Replica]:
        """Replicas of a service that have not stopped."""
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE service_id = $1 AND stopped_at IS NULL
               ORDER BY started_at, id""",
            service_id,
        )
        return [Replica.from_row(r) for r in rows]

    async def get_replica(self, replica_id: str) -> Replica | None:
        """One replica."""
        row = await self.pool.fetchrow("SELECT * FROM replicas WHERE id = $1", replica_id)
        return Replica.from_row(row) if row else None
