"""Budgets: when one runs out or comes back, and which amounts the API accepts."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from billing_service.domain.errors import BillingError

Transition = Literal["exhausted", "restored"]


def budget_transition(
    budget: Decimal | None, spent_now: Decimal, exhausted: bool
) -> Transition | None:
    """Whether a budget just ran out or came back.

    ``None`` budget means unlimited. Exhausted when spending reaches the budget; restored
    only from exhausted, once spending is below the budget again (a top-up, a raised
    budget, or a late stop event that shortened a replica's metered runtime).
    """
    over = budget is not None and spent_now >= budget
    if over and not exhausted:
        return "exhausted"
    if exhausted and not over:
        return "restored"
    return None


def parse_amount(value: Decimal, *, allow_zero: bool = True) -> Decimal:
    """A money amount from the API: finite, not negative (or positive), at most 1e12."""
    if not value.is_finite():
        raise BillingError("amount must be a finite number")
    if value < 0 or (not allow_zero and value == 0):
        raise BillingError("amount must be positive" if not allow_zero else "amount must be >= 0")
    if value > Decimal("1e12"):
        raise BillingError("amount is too large")
    return value


class BudgetNeedsAdminError(BillingError):
    """A project key asked for more budget than the operator lets projects give themselves."""

    status = 403


def check_self_service(budget_after: Decimal | None, max_budget: Decimal | None) -> None:
    """Refuse a budget a project's own key may not reach: above ``max_budget`` or unlimited
    (``None``) while a bound is configured; the admin key routes skip this."""
    if max_budget is None:
        return
    if budget_after is None:
        raise BudgetNeedsAdminError(
            "an unlimited budget needs the operator's admin key (PUT /projects/{project_id}/budget)"
        )
    if budget_after > max_budget:
        raise BudgetNeedsAdminError(
            f"a project key may set a budget of at most {max_budget}; "
            f"{budget_after} needs the operator's admin key (PUT /projects/{{project_id}}/budget)"
        )
