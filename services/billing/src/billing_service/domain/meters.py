"""Replica meters: a replica's interval merged from its events, and what it costs.

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
from datetime import UTC, datetime
from decimal import Decimal

from common.contracts import ReplicaStarted, ReplicaStopped

ZERO = Decimal(0)
MICROS = Decimal(1_000_000)


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
