"""What every table module of the repository shares: the pool, the topology, the outbox."""

from __future__ import annotations

from typing import Any

import asyncpg

from common.envelope import make_event
from common.outbox import enqueue
from common.topology import MODEL_SERVING, Topology
from model_serving_service.domain.outcomes import SOURCE


class RepositoryBase:
    """The pool and topology of one model-serving schema; events go to its outbox."""

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
