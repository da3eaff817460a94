"""PostgreSQL access of model-serving: models, services, replicas and predict outcomes.

Every state change that other services must learn about writes its event to the outbox
in the same transaction (``ServiceDeployed``, ``ReplicaStarted`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from common.contracts import (
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceUndeployed,
)
from common.envelope import CloudEvent, make_event, utcnow
from common.messaging import enqueue
from common.topology import MODEL_SERVING, Topology
from model_serving_service.domain.outcomes import SOURCE
from model_serving_service.domain.scaling import Scaling
from model_serving_service.domain.specs import ModelSpec

PREDICT_CONSUMER = "model_serving.predict"
"""Consumer name of predict outcomes in ``processed_messages`` (one row per request key)."""


@dataclass(frozen=True)
class Model:
    """A model in a project: a catalog install or a registered BYOM."""

    id: str
    project_id: str
    name: str
    version: str
    source: str
    catalog_name: str | None
    triton_name: str
    spec: ModelSpec
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Model:
        """Build from a ``models`` row."""
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            version=row["version"],
            source=row["source"],
            catalog_name=row["catalog_name"],
            triton_name=row["triton_name"],
            spec=ModelSpec.model_validate(row["spec"]),
            created_at=row["created_at"],
        )


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


@dataclass(frozen=True)
class Outcome:
    """One predict outcome to record: the request key and the event to publish."""

    key: str
    event: CloudEvent[Any]


class Repository:
    """Tables of one model-serving schema."""

    def __init__(self, pool: asyncpg.Pool, topology: Topology) -> None:
        self.pool = pool
        self.topology = topology

    @property
    def events_exchange(self) -> str:
        """Where model-serving's events go."""
        return self.topology.events_exchange(MODEL_SERVING)

    async def _publish(
        self, conn: asyncpg.Connection, data: Any, subject: str, correlationid: str | None = None
    ) -> None:
        event = make_event(data, source=SOURCE, subject=subject, correlationid=correlationid)
        await enqueue(conn, event, self.events_exchange)

    # ------------------------------------------------------------------ models

    async def insert_model(
        self,
        *,
        model_id: str,
        project_id: str,
        name: str,
        version: str,
        source: str,
        catalog_name: str | None,
        triton_name: str,
        spec: ModelSpec,
    ) -> Model | None:
        """Insert a model; None when the project already has ``name`` at ``version``."""
        row = await self.pool.fetchrow(
            """INSERT INTO models (id, project_id, name, version, source, catalog_name,
                                   triton_name, spec)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT DO NOTHING RETURNING *""",
            model_id,
            project_id,
            name,
            version,
            source,
            catalog_name,
            triton_name,
            spec.model_dump(mode="json"),
        )
        return Model.from_row(row) if row else None

    async def get_model(self, model_id: str, project_id: str | None = None) -> Model | None:
        """A live model (of ``project_id`` when given)."""
        row = await self.pool.fetchrow(
            """SELECT * FROM models WHERE id = $1 AND deleted_at IS NULL
               AND ($2::text IS NULL OR project_id = $2)""",
            model_id,
            project_id,
        )
        return Model.from_row(row) if row else None

    async def list_models(self, project_id: str) -> list[Model]:
        """A project's live models, newest first."""
        rows = await self.pool.fetch(
            """SELECT * FROM models WHERE project_id = $1 AND deleted_at IS NULL
               ORDER BY created_at DESC, id""",
            project_id,
        )
        return [Model.from_row(r) for r in rows]

    async def model_services_in_use(self, model_id: str) -> list[str]:
        """Services (not undeployed) that serve ``model_id``."""
        rows = await self.pool.fetch(
            "SELECT id FROM services WHERE model_id = $1 AND status <> 'undeployed' ORDER BY id",
            model_id,
        )
        return [r["id"] for r in rows]

    async def delete_model(self, model_id: str) -> bool:
        """Mark a model deleted."""
        done = await self.pool.fetchval(
            """UPDATE models SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL
               RETURNING 1""",
            model_id,
        )
        return done is not None

    async def all_triton_names(self) -> list[str]:
        """Triton names of every live model of this schema."""
        rows = await self.pool.fetch("SELECT triton_name FROM models WHERE deleted_at IS NULL")
        return [r["triton_name"] for r in rows]

    # ------------------------------------------------------------------ services

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

    # ------------------------------------------------------------------ replicas

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

    async def replica_seen(self, replica_id: str) -> None:
        """Heartbeat of a live replica."""
        await self.pool.execute(
            "UPDATE replicas SET seen_at = now() WHERE id = $1 AND stopped_at IS NULL",
            replica_id,
        )

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

    async def expire_lost_replicas(self, stale_seconds: float) -> list[str]:
        """Replicas whose heartbeat stopped (killed without draining) become ``lost``.

        Billing needs a stop for every start: ``replica.stopped.v1`` is emitted with the
        last heartbeat as the stop time.
        """
        lost: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE replicas SET state = 'lost', stopped_at = seen_at,
                       error = 'heartbeat stopped'
                   WHERE stopped_at IS NULL AND seen_at < now() - make_interval(secs => $1)
                   RETURNING *, (ready_at IS NOT NULL) AS started""",
                stale_seconds,
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

    # ------------------------------------------------------------------ outcomes

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        """Which request keys already have an outcome."""
        if not keys:
            return set()
        rows = await self.pool.fetch(
            """SELECT message_id FROM processed_messages
               WHERE consumer = $1 AND message_id = ANY($2::text[])""",
            PREDICT_CONSUMER,
            list(keys),
        )
        return {r["message_id"] for r in rows}

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[str]:
        """Claim each request key and write its outcome event, in one transaction.

        A key claimed before (a redelivered or duplicated request) gets no second
        outcome. Returns the keys recorded by this call.
        """
        if not outcomes:
            return set()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO processed_messages (consumer, message_id)
                   SELECT $1, k FROM unnest($2::text[]) AS t(k)
                   ON CONFLICT DO NOTHING RETURNING message_id""",
                PREDICT_CONSUMER,
                list(dict.fromkeys(o.key for o in outcomes)),
            )
            fresh = {r["message_id"] for r in rows}
            chosen: dict[str, Outcome] = {}
            for outcome in outcomes:
                if outcome.key in fresh and outcome.key not in chosen:
                    chosen[outcome.key] = outcome
            if chosen:
                events = [o.event for o in chosen.values()]
                await conn.execute(
                    """INSERT INTO outbox (event_id, exchange, exchange_type, routing_key, body)
                       SELECT e, $1, 'topic', k, b
                       FROM unnest($2::text[], $3::text[], $4::bytea[]) AS t(e, k, b)
                       ON CONFLICT (event_id) DO NOTHING""",
                    self.events_exchange,
                    [e.id for e in events],
                    [e.routing_key for e in events],
                    [e.to_json_bytes() for e in events],
                )
                await conn.execute("SELECT pg_notify('outbox_' || current_schema(), '')")
        return set(chosen)

    async def outbox_pending(self, event_ids: Sequence[str]) -> int:
        """How many of ``event_ids`` the relay has not published yet."""
        if not event_ids:
            return 0
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = ANY($1::text[])", list(event_ids)
        )
        return count


def now() -> datetime:
    """The current time (UTC)."""
    return utcnow()
