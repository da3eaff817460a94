"""Prometheus metrics of the billing service (besides the shared handler metrics)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge

from common.observability import metric_name
from common.topology import BILLING


@cache
def transitions_total() -> Counter:
    """Budget transitions announced, by kind."""
    return Counter(
        metric_name(BILLING, "budget_transitions_total"),
        "budget.exhausted / budget.restored transitions.",
        ["transition"],
    )


@cache
def budget_spent() -> Gauge:
    """What each project spent of its automation budget when billing last charged it."""
    return Gauge(
        metric_name(BILLING, "budget_spent"),
        "Automation budget spent per project (currency units), as of the last charge.",
        ["project_id"],
    )


@cache
def budget_total() -> Gauge:
    """Each project's automation budget when billing last charged it (beside what it spent:
    ``spent / budget`` is how near it is to running out)."""
    return Gauge(
        metric_name(BILLING, "budget"),
        "Automation budget per project (currency units), as of the last charge.",
        ["project_id"],
    )
