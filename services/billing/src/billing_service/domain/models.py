"""What pre-labeling saves, per model version: runtime and cost of the model service,
predictions, reviews, acceptance, the share auto-accepted and the cost per accepted label.

Runtime comes from the replica meters, which know services, not models
(``replica.started.v1`` carries no model). A replica's runtime is credited to the model
versions its own predictions name (``prediction.completed.v1`` carries the replica and
the model), split by their counts (one version in practice: a replica loads one model).
A replica that predicted nothing billing has seen (a cold start that found no work, an
idle ``min_replicas`` replica) is credited to the version its service predicted with
last before the replica started, else to the first one after; a service that never
predicted leaves it on a row without a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from billing_service.domain.meters import ZERO, ReplicaState, as_utc, cost, seconds_between


@dataclass(frozen=True, order=True)
class ModelVersion:
    """A model as predictions and reviews name it."""

    name: str
    model_id: str
    version: str


Key = tuple[str | None, ModelVersion | None]
"""A row of the report: the model service and the model version it ran (``None``: not
known)."""


@dataclass(frozen=True)
class VersionSpan:
    """When a service predicted with one model version."""

    model: ModelVersion
    first: datetime
    last: datetime


@dataclass(frozen=True)
class ReviewCounts:
    """Decisions on task items whose annotations one model version made."""

    reviewed: int = 0
    """Every decision (people's and a confidence edge's), the latest per task item."""
    accepted_unchanged: int = 0
    """Approved by a person with every annotation kept as predicted."""
    auto_accepted: int = 0
    """Accepted by a pipeline's confidence edge, no person involved."""


@dataclass(frozen=True)
class ModelUsage:
    """The figures of one model version of one service."""

    service_id: str | None
    model: ModelVersion | None
    runtime_seconds: Decimal = ZERO
    cost: Decimal = ZERO
    predictions: int = 0
    reviews: ReviewCounts = field(default_factory=ReviewCounts)

    @property
    def reviewed(self) -> int:
        """Task items decided."""
        return self.reviews.reviewed

    @property
    def accepted_unchanged(self) -> int:
        """Predictions people accepted unchanged."""
        return self.reviews.accepted_unchanged

    @property
    def auto_accepted(self) -> int:
        """Task items a confidence edge accepted."""
        return self.reviews.auto_accepted

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted unchanged / decided by people; ``None`` before anyone decided."""
        by_people = self.reviews.reviewed - self.reviews.auto_accepted
        return self.reviews.accepted_unchanged / by_people if by_people > 0 else None

    @property
    def auto_accepted_share(self) -> float | None:
        """Auto-accepted / decided; ``None`` when nothing was decided."""
        reviewed = self.reviews.reviewed
        return self.reviews.auto_accepted / reviewed if reviewed > 0 else None

    @property
    def cost_per_accepted_label(self) -> Decimal | None:
        """Runtime cost / predictions people accepted unchanged; ``None`` when none were."""
        accepted = self.reviews.accepted_unchanged
        return self.cost / accepted if accepted > 0 else None


def clipped_seconds(
    state: ReplicaState, now: datetime, start: datetime | None, end: datetime
) -> Decimal:
    """Seconds ``state`` was metered within ``[start, end]`` (``start`` ``None``: since
    ever)."""
    interval = state.interval(now)
    if interval is None:
        return ZERO
    lo = interval[0] if start is None else max(interval[0], as_utc(start))
    return seconds_between(lo, min(interval[1], as_utc(end)))


def credited_versions(
    state: ReplicaState, ran: Mapping[ModelVersion, int], spans: Sequence[VersionSpan]
) -> dict[ModelVersion | None, Decimal]:
    """Which model versions ``state``'s runtime is credited to, as fractions summing to 1:
    those of its own predictions (``ran``, by count), else the service's version nearest
    before its start (``spans``), else the first after, else ``None``."""
    total = sum(ran.values())
    if total > 0:
        return {model: Decimal(n) / Decimal(total) for model, n in ran.items() if n > 0}
    if not spans:
        return {None: Decimal(1)}
    start = state.start or state.stopped_at
    before = [s for s in spans if start is not None and s.first <= start]
    if before:
        chosen = max(before, key=lambda s: (s.last, s.model))
    else:
        chosen = min(spans, key=lambda s: (s.first, s.model))
    return {chosen.model: Decimal(1)}


def usage_by_model(
    replicas: Iterable[tuple[ReplicaState, Decimal]],
    ran: Mapping[str, Mapping[ModelVersion, int]],
    spans: Mapping[str, Sequence[VersionSpan]],
    predictions: Mapping[Key, int],
    reviews: Mapping[Key, ReviewCounts],
    *,
    now: datetime,
    start: datetime | None,
    end: datetime,
) -> list[ModelUsage]:
    """One row per (service, model version) with runtime in ``[start, end]``,
    predictions or reviews there; sorted by service, then model."""
    seconds: dict[Key, Decimal] = {}
    costs: dict[Key, Decimal] = {}
    for state, rate in replicas:
        secs = clipped_seconds(state, now, start, end)
        if secs <= 0:
            continue
        credited = credited_versions(
            state, ran.get(state.replica_id, {}), spans.get(state.service_id, ())
        )
        for model, fraction in credited.items():
            key = (state.service_id, model)
            share = secs * fraction
            seconds[key] = seconds.get(key, ZERO) + share
            costs[key] = costs.get(key, ZERO) + cost(share, rate)
    keys = set(seconds) | set(predictions) | set(reviews)
    return [
        ModelUsage(
            service_id=key[0],
            model=key[1],
            runtime_seconds=seconds.get(key, ZERO),
            cost=costs.get(key, ZERO),
            predictions=predictions.get(key, 0),
            reviews=reviews.get(key, ReviewCounts()),
        )
        for key in sorted(keys, key=_order)
    ]


def _order(key: Key) -> tuple[str, bool, ModelVersion]:
    service, model = key
    return (service or "", model is None, model or ModelVersion("", "", ""))
