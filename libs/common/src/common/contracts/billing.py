"""Contracts published by the billing service."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from common.contracts.base import Contract
from common.topology import BILLING


class BudgetExhausted(Contract):
    """A project's automation budget is spent: no more scale-ups for it."""

    routing_key = "budget.exhausted.v1"
    producer = BILLING

    project_id: str
    """Project."""
    budget: Decimal
    """Budget (currency units)."""
    spent: Decimal
    """Spent so far."""
    at: datetime
    """When it ran out."""


class BudgetRestored(Contract):
    """A top-up brought a project's budget back above its spending."""

    routing_key = "budget.restored.v1"
    producer = BILLING

    project_id: str
    """Project."""
    budget: Decimal
    """New budget."""
    spent: Decimal
    """Spent so far."""
    at: datetime
    """When it was restored."""
