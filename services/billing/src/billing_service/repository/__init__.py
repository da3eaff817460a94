"""PostgreSQL access of billing, one module per aggregate: budgets, replica meters,
usage (predictions), reviews, and the reads of the report per model version.

Budget transitions enter the outbox in the transaction that charges the budget, so a
``budget.exhausted.v1`` is never lost nor announced twice.
"""

from __future__ import annotations

from billing_service.repository.budgets import BudgetRows, BudgetView
from billing_service.repository.models import ModelUsageRows
from billing_service.repository.replicas import ReplicaRows
from billing_service.repository.reviews import ReviewRows
from billing_service.repository.usage import UsageRows

__all__ = ["BudgetView", "Repository"]


class Repository(ReplicaRows, BudgetRows, UsageRows, ReviewRows, ModelUsageRows):
    """The billing repository: every aggregate's part on one pool."""
