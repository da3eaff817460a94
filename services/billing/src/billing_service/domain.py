"""Metering arithmetic with no I/O: replica intervals from replica events, runtime and
cost per replica, service, project and UTC day, burn rate and budget transitions.

A replica's state is a merge of the events seen for it, built so that any order and
any number of duplicates give the same state: the start is the earliest start reported,
the stop the latest stop. ``replica.stopped.v1`` may carry the start too; it is used
only while no ``replica.started.v1`` arrived. Money and seconds are ``Decimal`` all the
way: timestamps have microsecond resolution, so runtime in seconds is exact to 6
places and cost (rate x seconds) is exact, never rounded on the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from common.contracts import ReplicaStarted, ReplicaStopped
from common.errors import ServiceError

ZERO = Decimal(0)
MICROS = Decimal(1_000_000)


class BillingError(ServiceError):
    """A request the service refuses, with the HTTP status it maps to."""

    status = 422


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def seconds_between(start: datetime, end: datetime) -> Decimal:
    """Exact seconds from ``start`` to ``end`` (0 when ``end`` is not after ``start``)."""
    delta = as_utc(end) - as_utc(start)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros) / MICROS if micros > 0 else ZERO


# --------------------------------------------------------------------------- replicas


@dataclass(frozen=True)
class ReplicaState:
    """What billing knows of one replica, merged from its events."""

    replica_id: str
    project_id: str
    service_id: str
    instance_type: str
    type_from_start: bool = False
    """Whether ``instance_type`` came from a start event (which wins over a stop's)."""
    started_at: datetime | None = None
    """Earliest ``replica.started.v1`` time."""
    started_hint: datetime | None = None
    """Earliest start carried by a ``replica.stopped.v1``, used when no start arrived."""
    stopped_at: datetime | None = None
    """Latest ``replica.stopped.v1`` time."""

    @property
    def start(self) -> datetime | None:
        """Where metering starts; ``None`` until some event says when it started."""
        return self.started_at if self.started_at is not None else self.started_hint

    @property
    def running(self) -> bool:
        """Started and not stopped: metered up to now."""
        return self.start is not None and self.stopped_at is None

    def interval(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The metered interval: start to stop, or to ``now`` while running."""
        start = self.start
        if start is None:
            return None
        end = self.stopped_at if self.stopped_at is not None else as_utc(now)
        return (start, end) if end > start else None

    def runtime_seconds(self, now: datetime) -> Decimal:
        """Metered seconds up to ``now``."""
        interval = self.interval(now)
        return seconds_between(*interval) if interval else ZERO


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _merge_type(state: ReplicaState, instance_type: str, from_start: bool) -> ReplicaState:
    # A start's instance type wins over a stop's; between equals, the smallest name, so
    # even conflicting duplicates merge the same way in any order.
    if from_start and not state.type_from_start:
        return replace(state, instance_type=instance_type, type_from_start=True)
    if from_start == state.type_from_start and instance_type < state.instance_type:
        return replace(state, instance_type=instance_type)
    return state


def apply_started(state: ReplicaState | None, event: ReplicaStarted) -> ReplicaState:
    """Merge a ``replica.started.v1`` into a replica's state."""
    started = as_utc(event.started_at)
    if state is None:
        return ReplicaState(
            event.replica_id,
            event.project_id,
            event.service_id,
            event.instance_type,
            type_from_start=True,
            started_at=started,
        )
    merged = replace(state, started_at=_earliest(state.started_at, started))
    return _merge_type(merged, event.instance_type, from_start=True)


def apply_stopped(state: ReplicaState | None, event: ReplicaStopped) -> ReplicaState:
    """Merge a ``replica.stopped.v1`` into a replica's state."""
    stopped = as_utc(event.stopped_at)
    hint = as_utc(event.started_at) if event.started_at is not None else None
    if state is None:
        return ReplicaState(
            event.replica_id,
            event.project_id,
            event.service_id,
            event.instance_type,
            started_hint=hint,
            stopped_at=stopped,
        )
    merged = replace(
        state,
        started_hint=_earliest(state.started_hint, hint),
        stopped_at=_latest(state.stopped_at, stopped),
    )
    return _merge_type(merged, event.instance_type, from_start=False)


ReplicaEvent = ReplicaStarted | ReplicaStopped


def fold(events: Iterable[ReplicaEvent]) -> dict[str, ReplicaState]:
    """Replica states from a sequence of events, in whatever order they came."""
    states: dict[str, ReplicaState] = {}
    for event in events:
        current = states.get(event.replica_id)
        if isinstance(event, ReplicaStarted):
            states[event.replica_id] = apply_started(current, event)
        else:
            states[event.replica_id] = apply_stopped(current, event)
    return states


# --------------------------------------------------------------------------- rates


def rate_for(instance_type: str, rates: Mapping[str, Decimal]) -> Decimal:
    """Price of one replica-second of ``instance_type``.

    An unknown type is charged at the highest configured rate: a misconfiguration must
    never make compute free.
    """
    if instance_type in rates:
        return rates[instance_type]
    return max(rates.values(), default=ZERO)


def cost(seconds: Decimal, rate: Decimal) -> Decimal:
    """Exact cost of ``seconds`` at ``rate`` per second."""
    return seconds * rate


# --------------------------------------------------------------------------- days


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


# --------------------------------------------------------------------------- budgets

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
