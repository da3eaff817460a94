"""Persistence of the billing service: replicas, predictions, budgets; budget events go
through the outbox in the transaction that changes the budget's state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import asyncpg

from billing_service import domain
from billing_service.domain import BillingError, ReplicaEvent, ReplicaState
from common.contracts import (
    BudgetExhausted,
    BudgetRestored,
    PredictionCompleted,
    ReplicaStarted,
)
from common.envelope import make_event
from common.messaging import enqueue_many
from common.topology import BILLING, Topology

SOURCE = "/services/billing"


@dataclass(frozen=True)
class BudgetView:
    """A project's budget as of now."""

    project_id: str
    budget: Decimal | None
    spent: Decimal
    exhausted: bool
    charged_at: datetime | None
    exhausted_at: datetime | None

    @property
    def remaining(self) -> Decimal | None:
        """Budget left (never below 0); ``None`` when unlimited."""
        return None if self.budget is None else max(self.budget - self.spent, domain.ZERO)


def _state(row: asyncpg.Record) -> ReplicaState:
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


class Repository:
    """Tables of the billing schema plus the outbox."""

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

    # ------------------------------------------------------------------ metering

    async def apply_replica_event(self, event: ReplicaEvent, now: datetime) -> ReplicaState:
        """Merge a replica event into its replica and charge the project."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise events of one replica (start and stop arrive on two queues).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.replica_id
            )
            row = await conn.fetchrow(
                "SELECT * FROM replicas WHERE replica_id = $1", event.replica_id
            )
            current = _state(row) if row is not None else None
            if current is not None and current.project_id != event.project_id:
                raise BillingError(
                    f"replica {event.replica_id!r} belongs to project {current.project_id!r}"
                )
            if isinstance(event, ReplicaStarted):
                merged = domain.apply_started(current, event)
            else:
                merged = domain.apply_stopped(current, event)
            rate = domain.rate_for(merged.instance_type, self._rates)
            closed_cost = (
                domain.cost(merged.runtime_seconds(now), rate)
                if merged.start is not None and merged.stopped_at is not None
                else None
            )
            await conn.execute(
                """INSERT INTO replicas (replica_id, project_id, service_id, instance_type,
                       type_from_start, rate, started_at, started_hint, stopped_at, closed_cost)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (replica_id) DO UPDATE SET
                       instance_type = excluded.instance_type,
                       type_from_start = excluded.type_from_start, rate = excluded.rate,
                       started_at = excluded.started_at, started_hint = excluded.started_hint,
                       stopped_at = excluded.stopped_at, closed_cost = excluded.closed_cost,
                       updated_at = now()""",
                merged.replica_id,
                merged.project_id,
                merged.service_id,
                merged.instance_type,
                merged.type_from_start,
                rate,
                merged.started_at,
                merged.started_hint,
                merged.stopped_at,
                closed_cost,
            )
            await self._ensure_budget(conn, merged.project_id)
            await self._charge(conn, merged.project_id, now)
        return merged

    async def record_prediction(self, prediction: PredictionCompleted) -> bool:
        """Count a prediction for its service and day; False when already counted."""
        inserted = await self.pool.fetchval(
            """INSERT INTO predictions (execution_id, project_id, service_id, day)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
            prediction.execution_id,
            prediction.project_id,
            prediction.service_id,
            domain.as_utc(prediction.finished_at).date(),
        )
        return inserted is not None

    async def running_projects(self) -> list[str]:
        """Projects with at least one replica being metered up to now."""
        rows = await self.pool.fetch(
            """SELECT DISTINCT project_id FROM replicas WHERE stopped_at IS NULL
               AND (started_at IS NOT NULL OR started_hint IS NOT NULL)"""
        )
        return [r["project_id"] for r in rows]

    async def charge(self, project_id: str, now: datetime) -> domain.Transition | None:
        """Charge a project's runtime up to ``now``; return a budget transition if any."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._ensure_budget(conn, project_id)
            return await self._charge(conn, project_id, now)

    async def _ensure_budget(self, conn: asyncpg.Connection, project_id: str) -> None:
        await conn.execute(
            "INSERT INTO budgets (project_id, budget) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            project_id,
            self._default_budget,
        )

    async def _spent(self, conn: asyncpg.Connection, project_id: str, now: datetime) -> Decimal:
        closed: Decimal = await conn.fetchval(
            """SELECT COALESCE(sum(closed_cost), 0) FROM replicas
               WHERE project_id = $1 AND closed_cost IS NOT NULL""",
            project_id,
        )
        running = await conn.fetch(
            """SELECT * FROM replicas WHERE project_id = $1 AND stopped_at IS NULL
               AND (started_at IS NOT NULL OR started_hint IS NOT NULL)""",
            project_id,
        )
        return closed + domain.spent(((_state(r), r["rate"]) for r in running), now)

    async def _charge(
        self, conn: asyncpg.Connection, project_id: str, now: datetime
    ) -> domain.Transition | None:
        """Recompute spending under the budget row's lock and emit a transition once."""
        row = await conn.fetchrow(
            "SELECT * FROM budgets WHERE project_id = $1 FOR UPDATE", project_id
        )
        assert row is not None
        spent = await self._spent(conn, project_id, now)
        transition = domain.budget_transition(row["budget"], spent, row["exhausted"])
        await conn.execute(
            """UPDATE budgets SET spent = $2, charged_at = $3,
                   exhausted = CASE $4::text WHEN 'exhausted' THEN true
                                             WHEN 'restored' THEN false ELSE exhausted END,
                   exhausted_at = CASE WHEN $4::text = 'exhausted' THEN $3 ELSE exhausted_at END,
                   restored_at = CASE WHEN $4::text = 'restored' THEN $3 ELSE restored_at END,
                   updated_at = now()
               WHERE project_id = $1""",
            project_id,
            spent,
            now,
            transition,
        )
        if transition is not None:
            budget: Decimal = row["budget"]
            data: BudgetExhausted | BudgetRestored
            if transition == "exhausted":
                data = BudgetExhausted(project_id=project_id, budget=budget, spent=spent, at=now)
            else:
                data = BudgetRestored(
                    project_id=project_id,
                    budget=budget if budget is not None else spent,
                    spent=spent,
                    at=now,
                )
            event = make_event(data, source=SOURCE, subject=project_id, time=now)
            await enqueue_many(conn, [event], self._exchange)
        return transition

    # ------------------------------------------------------------------ budgets

    async def budget(self, project_id: str, now: datetime) -> BudgetView:
        """The project's budget and what it spent up to now (nothing is written)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM budgets WHERE project_id = $1", project_id)
            spent = await self._spent(conn, project_id, now)
        if row is None:
            return BudgetView(project_id, self._default_budget, spent, False, None, None)
        return BudgetView(
            project_id,
            row["budget"],
            spent,
            row["exhausted"],
            row["charged_at"],
            row["exhausted_at"],
        )

    async def change_budget(
        self, project_id: str, kind: str, amount: Decimal | None, now: datetime
    ) -> tuple[BudgetView, domain.Transition | None]:
        """Set the budget (``set``, ``None`` = unlimited) or add to it (``top-up``), then
        charge, so a restored (or newly exhausted) budget is announced at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._ensure_budget(conn, project_id)
            current = await conn.fetchval(
                "SELECT budget FROM budgets WHERE project_id = $1 FOR UPDATE", project_id
            )
            if kind == "top-up":
                if current is None:
                    raise BillingError(
                        "the budget is unlimited; set one with PUT /budget first", 409
                    )
                assert amount is not None
                new_budget: Decimal | None = current + amount
            else:
                new_budget = amount
            await conn.execute(
                "UPDATE budgets SET budget = $2, updated_at = now() WHERE project_id = $1",
                project_id,
                new_budget,
            )
            await conn.execute(
                """INSERT INTO budget_changes (project_id, kind, amount, budget_after, at)
                   VALUES ($1, $2, $3, $4, $5)""",
                project_id,
                kind,
                amount,
                new_budget,
                now,
            )
            transition = await self._charge(conn, project_id, now)
        return await self.budget(project_id, now), transition

    # ------------------------------------------------------------------ usage

    async def replicas_between(
        self, project_id: str, since: date, until: date, now: datetime
    ) -> list[tuple[ReplicaState, Decimal]]:
        """Replicas of the project metered at some time of the UTC days [since, until]."""
        start = datetime.combine(since, time.min, UTC)
        end = datetime.combine(until + timedelta(days=1), time.min, UTC)
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE project_id = $1
               AND COALESCE(started_at, started_hint) IS NOT NULL
               AND COALESCE(started_at, started_hint) < $3
               AND (stopped_at IS NULL OR stopped_at > $2)
               ORDER BY COALESCE(started_at, started_hint), replica_id""",
            project_id,
            start,
            end,
        )
        return [(_state(r), r["rate"]) for r in rows]

    async def predictions_between(
        self, project_id: str, since: date, until: date
    ) -> dict[tuple[str, date], int]:
        """Predictions per (service, day)."""
        rows = await self.pool.fetch(
            """SELECT service_id, day, count(*) AS n FROM predictions
               WHERE project_id = $1 AND day BETWEEN $2 AND $3 GROUP BY 1, 2""",
            project_id,
            since,
            until,
        )
        return {(r["service_id"], r["day"]): r["n"] for r in rows}

    async def running(self, project_id: str) -> list[tuple[ReplicaState, Decimal]]:
        """Replicas of the project running now, with their rates."""
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE project_id = $1 AND stopped_at IS NULL
               AND (started_at IS NOT NULL OR started_hint IS NOT NULL)
               ORDER BY replica_id""",
            project_id,
        )
        return [(_state(r), r["rate"]) for r in rows]
