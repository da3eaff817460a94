"""Usage: runtime and cost per service and UTC day, spending and burn rate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from billing_service.domain.errors import BillingError
from billing_service.domain.meters import ZERO, ReplicaState, as_utc, cost, seconds_between


def split_by_day(start: datetime, end: datetime) -> dict[date, Decimal]:
    """Seconds of ``[start, end)`` falling on each UTC day."""
    start, end = as_utc(start), as_utc(end)
    days: dict[date, Decimal] = {}
    cursor = start
    while cursor < end:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(), UTC)
        upto = min(midnight, end)
        days[cursor.date()] = days.get(cursor.date(), ZERO) + seconds_between(cursor, upto)
        cursor = upto
    return days


@dataclass(frozen=True)
class Usage:
    """Runtime, cost and predictions of one (service, day)."""

    service_id: str
    day: date
    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


def usage_by_service_day(
    replicas: Iterable[tuple[ReplicaState, Decimal]],
    now: datetime,
    predictions: Mapping[tuple[str, date], int] | None = None,
    *,
    since: date | None = None,
    until: date | None = None,
) -> list[Usage]:
    """Runtime and cost per (service, UTC day) of replicas given with their rates, plus
    prediction counts; days outside ``[since, until]`` are left out."""
    seconds: dict[tuple[str, date], Decimal] = {}
    costs: dict[tuple[str, date], Decimal] = {}
    for state, rate in replicas:
        interval = state.interval(now)
        if interval is None:
            continue
        for day, secs in split_by_day(*interval).items():
            key = (state.service_id, day)
            seconds[key] = seconds.get(key, ZERO) + secs
            costs[key] = costs.get(key, ZERO) + cost(secs, rate)
    counts = dict(predictions or {})
    rows = []
    for key in sorted(set(seconds) | set(counts)):
        service_id, day = key
        if (since is not None and day < since) or (until is not None and day > until):
            continue
        rows.append(
            Usage(service_id, day, seconds.get(key, ZERO), costs.get(key, ZERO), counts.get(key, 0))
        )
    return rows


def spent(replicas: Iterable[tuple[ReplicaState, Decimal]], now: datetime) -> Decimal:
    """Total cost of replicas (with their rates) metered up to ``now``."""
    return sum((cost(s.runtime_seconds(now), rate) for s, rate in replicas), ZERO)


def burn_rate(replicas: Iterable[tuple[ReplicaState, Decimal]]) -> Decimal:
    """Currency per second the running replicas cost right now."""
    return sum((rate for s, rate in replicas if s.running), ZERO)


MAX_USAGE_DAYS = 366


def usage_range(since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The UTC days a usage request covers: ``until`` defaults to today, ``since`` to 29
    days before it; at most :data:`MAX_USAGE_DAYS`."""
    until = until or today
    since = since or until - timedelta(days=29)
    if since > until:
        raise BillingError("since must not be after until")
    if (until - since).days >= MAX_USAGE_DAYS:
        raise BillingError(f"at most {MAX_USAGE_DAYS} days per usage request")
    return since, until


@dataclass(frozen=True)
class Totals:
    """Sums over usage rows."""

    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


def totals(rows: Iterable[Usage]) -> Totals:
    """Runtime, cost and predictions summed over ``rows``."""
    listed = list(rows)
    return Totals(
        sum((u.runtime_seconds for u in listed), ZERO),
        sum((u.cost for u in listed), ZERO),
        sum(u.predictions for u in listed),
    )


@dataclass(frozen=True)
class ReplicaUsage:
    """One replica's metered runtime within a range of UTC days."""

    replica_id: str
    service_id: str
    instance_type: str
    rate: Decimal
    started_at: datetime | None
    stopped_at: datetime | None
    running: bool
    runtime_seconds: Decimal
    cost: Decimal
    days: dict[date, Decimal]


def replica_usage(
    state: ReplicaState, rate: Decimal, now: datetime, since: date, until: date
) -> ReplicaUsage:
    """``state``'s runtime and cost on the days ``[since, until]``, split by day."""
    interval = state.interval(now)
    days = {
        day: secs
        for day, secs in (split_by_day(*interval) if interval else {}).items()
        if since <= day <= until
    }
    seconds = sum(days.values(), ZERO)
    return ReplicaUsage(
        replica_id=state.replica_id,
        service_id=state.service_id,
        instance_type=state.instance_type,
        rate=rate,
        started_at=state.start,
        stopped_at=state.stopped_at,
        running=state.running,
        runtime_seconds=seconds,
        cost=cost(seconds, rate),
        days=days,
    )
