"""Setting and topping up a project's budget."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing_service.domain.budgets import parse_amount
from billing_service.repository import BudgetView, Repository


async def budget(repo: Repository, project_id: str) -> BudgetView:
    """The budget and what was spent up to now."""
    return await repo.budget(project_id, datetime.now(UTC))


async def set_budget(
    repo: Repository,
    project_id: str,
    amount: Decimal | None,
    *,
    max_budget: Decimal | None = None,
) -> BudgetView:
    """Set the budget (``None``: unlimited); a project key's (``max_budget`` given) may
    not exceed ``max_budget`` nor be unlimited."""
    checked = parse_amount(amount) if amount is not None else None
    view, _ = await repo.change_budget(
        project_id, "set", checked, datetime.now(UTC), max_budget=max_budget
    )
    return view


async def top_up(
    repo: Repository, project_id: str, amount: Decimal, *, max_budget: Decimal | None = None
) -> BudgetView:
    """Add a positive amount to the budget; a project key's top-up (``max_budget`` given)
    may not take it past ``max_budget``."""
    checked = parse_amount(amount, allow_zero=False)
    view, _ = await repo.change_budget(
        project_id, "top-up", checked, datetime.now(UTC), max_budget=max_budget
    )
    return view
