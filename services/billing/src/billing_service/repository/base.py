"""What every part of the billing repository shares: the pool, the outbox exchange,
the configured rates and default budget, and the row-to-state mapping of replicas."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import asyncpg

from billing_service.domain.meters import ReplicaState
from common.topology import BILLING, Topology

SOURCE = "/services/billing"


def replica_state(row: asyncpg.Record) -> ReplicaState:
    """A ``replicas`` row as the domain's state."""
    return ReplicaState(
        row["replica_id"],
        row["project_id"],
        row["service_id"],
        row["instance_type"],
        row["type_from_start"],
        row["started_at"],
        row["started_hint"],
        row["stopped_at"],
    )


class RepositoryBase:
    """Tables of one billing schema plus its outbox."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topology: Topology,
        rates: Mapping[str, Decimal],
        default_budget: Decimal | None,
    ) -> None:
        self.pool = pool
        self._exchange = topology.events_exchange(BILLING)
        self._rates = dict(rates)
        self._default_budget = default_budget
