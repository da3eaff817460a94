"""Budgets: the project's limit, its spending charged under the budget row's lock, and
``budget.exhausted.v1`` / ``budget.restored.v1`` written to the outbox in the transaction
that changes the budget's state."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from billing_service import metrics
from billing_service.domain.budgets import Transition, budget_transition, check_self_service
from billing_service.domain.errors import BillingError
from billing_service.domain.meters import ZERO
from billing_service.domain.usage import spent as spent_of
from billing_service.repository.base import SOURCE, RepositoryBase, replica_state
from common.contracts import BudgetExhausted, BudgetRestored
from common.envelope import make_event
from common.outbox import enqueue_many


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
        return None if self.budget is None else max(self.budget - self.spent, ZERO)


class BudgetRows(RepositoryBase):
    """The ``budgets`` and ``budget_changes`` tables."""

    async def charge(self, project_id: str, now: datetime) -> Transition | None:
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
        return closed + spent_of(((replica_state(r), r["rate"]) for r in running), now)

    async def _charge(
        self, conn: asyncpg.Connection, project_id: str, now: datetime
    ) -> Transition | None:
        """Recompute spending under the budget row's lock and emit a transition once."""
        row = await conn.fetchrow(
            "SELECT * FROM budgets WHERE project_id = $1 FOR UPDATE", project_id
        )
        assert row is not None
        spent = await self._spent(conn, project_id, now)
        transition = budget_transition(row["budget"], spent, row["exhausted"])
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
        metrics.budget_spent().labels(project_id).set(float(spent))
        if row["budget"] is None:  # no budget: unlimited, nothing to be near of
            with contextlib.suppress(KeyError):
                metrics.budget_total().remove(project_id)
        else:
            metrics.budget_total().labels(project_id).set(float(row["budget"]))
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
        self,
        project_id: str,
        kind: str,
        amount: Decimal | None,
        now: datetime,
        *,
        max_budget: Decimal | None = None,
    ) -> tuple[BudgetView, Transition | None]:
        """Set the budget (``set``, ``None`` = unlimited) or add to it (``top-up``), then
        charge, so a restored (or newly exhausted) budget is announced at once.

        ``max_budget`` (a project key's change): the budget after the change may not pass
        it, checked under the budget row's lock, so concurrent top-ups cannot together
        pass the bound each stays under alone."""
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
            check_self_service(new_budget, max_budget)
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
