"""What every part of the repository shares: the pool, the topology, the caches, the
item row layout and the outbox write that goes with each change."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from common.contracts import Contract, ItemSnapshot
from common.envelope import make_event
from common.outbox import enqueue
from common.topology import DATASET, Topology

SOURCE = "/services/dataset"
ITEM_COLUMNS = "id, project_id, dataset_id, name, filename, dir, type, hidden, created_at, updated_at, metadata"


def item_of(row: asyncpg.Record) -> ItemSnapshot:
    """An item row as the snapshot events and answers carry."""
    return ItemSnapshot(**dict(row))


@dataclass(frozen=True)
class Store:
    """The connection pool and names each part of the repository works with."""

    pool: asyncpg.Pool
    topology: Topology
    key_cache: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Known API keys (hash -> expiry, project); unknown keys are never cached."""
    dataset_projects: dict[str, str] = field(default_factory=dict)
    """dataset id -> project id, of datasets seen by ingest commands."""

    async def _publish(self, conn: asyncpg.Connection, event: Contract, subject: str) -> None:
        """Put ``event`` into the outbox, in the transaction of ``conn``."""
        await enqueue(
            conn,
            make_event(event, source=SOURCE, subject=subject),
            self.topology.events_exchange(DATASET),
        )
