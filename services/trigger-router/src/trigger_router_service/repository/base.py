"""What every part of the repository shares: the pool, the topology, the schema,
and the outbox writes and wake-ups that go with state changes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from common.contracts import (
    ExecutionCancelled,
    ItemSnapshot,
    Origin,
    PredictRequest,
)
from common.envelope import CloudEvent, make_event
from common.outbox import enqueue_many
from common.topology import TRIGGER_ROUTER, Topology
from trigger_router_service.domain.executions import ExecutionStatus

SOURCE = "/services/trigger-router"


def wake_channel(schema: str) -> str:
    """The NOTIFY channel that wakes the autoscaler leader (payload: a service id)."""
    return f"scale_{schema}"


def predict_request(
    execution_id: str,
    service_id: str,
    project_id: str,
    item: ItemSnapshot | dict[str, Any],
    trigger_id: str | None,
    attempt: int,
    origin: Origin | None = None,
    blob_base64: str | None = None,
) -> CloudEvent[Any]:
    """The envelope of one execution's predict request; its id is stable per attempt,
    so a retried transaction cannot publish the same attempt twice. ``blob_base64``: the
    item's blob inline (from its ``item.created.v1``), so the worker skips its S3 read."""
    snapshot = item if isinstance(item, ItemSnapshot) else ItemSnapshot.model_validate(item)
    return make_event(
        PredictRequest(
            execution_id=execution_id,
            service_id=service_id,
            project_id=project_id,
            item=snapshot,
            trigger_id=trigger_id,
            attempt=attempt,
            origin=origin,
            blob_base64=blob_base64,
        ),
        source=SOURCE,
        subject=snapshot.id,
        correlationid=execution_id,
        event_id=f"{execution_id}.{attempt}",
    )


def origin_of(row: Mapping[str, Any]) -> Origin | None:
    """Which way created an execution row (its ``trigger_id``, ``batch_id`` or pipeline
    columns)."""
    if row["pipeline_id"] is not None:
        return Origin(
            way="pipeline",
            id=row["pipeline_id"],
            pipeline_execution_id=row["pipeline_execution_id"],
            node_id=row["node_id"],
        )
    if row["batch_id"] is not None:
        return Origin(way="batch", id=row["batch_id"])
    if row["trigger_id"] is not None:
        return Origin(way="trigger", id=row["trigger_id"])
    return None


CANCELLED_COLUMNS = (
    "id, project_id, service_id, item_id, attempts, error, finished_at, trigger_id, batch_id, "
    "pipeline_id, pipeline_execution_id, node_id"
)
"""What :func:`cancelled_event` reads of an execution row (``RETURNING`` these)."""


def cancelled_event(row: Mapping[str, Any]) -> CloudEvent[Any]:
    """The ``execution.cancelled.v1`` of a row just moved to ``cancelled`` (its error is
    the reason); the id is stable per attempt, so a retried transaction writes it once."""
    return make_event(
        ExecutionCancelled(
            execution_id=row["id"],
            project_id=row["project_id"],
            service_id=row["service_id"],
            item_id=row["item_id"],
            attempt=row["attempts"],
            reason=row["error"] or "cancelled",
            cancelled_at=row["finished_at"],
            origin=origin_of(row),
        ),
        source=SOURCE,
        subject=row["item_id"],
        correlationid=row["id"],
        event_id=f"{row['id']}.{row['attempts']}.cancelled",
    )


def status_values(statuses: Iterable[ExecutionStatus]) -> list[str]:
    """A status set as a ``text[]`` parameter (``status = ANY($n::text[])``)."""
    return sorted(s.value for s in statuses)


@dataclass
class Store:
    """The connection pool and names each part of the repository works with."""

    pool: asyncpg.Pool
    topology: Topology
    schema: str
    dql_max_depth: int = 10

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction: what a use case writes through it commits
        together (state, outbox rows, wake-ups) or not at all."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def _publish_predicts(
        self, conn: asyncpg.Connection, requests: Sequence[CloudEvent[Any]], services: list[str]
    ) -> None:
        await enqueue_many(
            conn,
            requests,
            self.topology.predict_exchange,
            exchange_type="direct",
            routing_keys=services,
        )

    async def _publish_cancels(
        self, conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Announce executions just cancelled (rows with :data:`CANCELLED_COLUMNS`), in the
        caller's transaction: workers skip their requests, annotations are discarded."""
        await enqueue_many(
            conn, [cancelled_event(r) for r in rows], self.topology.events_exchange(TRIGGER_ROUTER)
        )

    async def _wake(self, conn: asyncpg.Connection, services: Sequence[str]) -> None:
        if services:
            await conn.execute(
                "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s",
                wake_channel(self.schema),
                sorted(set(services)),
            )
