"""Figures per model version without servers: crediting replica runtime to model
versions, windows, acceptance and cost per accepted label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing_service.domain import meters
from billing_service.domain.meters import ReplicaState
from billing_service.domain.models import (
    ModelUsage,
    ModelVersion,
    ReviewCounts,
    VersionSpan,
    clipped_seconds,
    credited_versions,
    usage_by_model,
)
from common.contracts import ReplicaStarted, ReplicaStopped

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
V1 = ModelVersion("digits", "mdl_1", "1")
V2 = ModelVersion("digits", "mdl_1", "2")
RATE = Decimal("0.01")


def replica(replica_id: str, start: datetime, seconds: float, service: str = "svc") -> ReplicaState:
    events: list[meters.ReplicaEvent] = [
        ReplicaStarted(
            replica_id=replica_id, service_id=service, project_id="prj", started_at=start
        ),
        ReplicaStopped(
            replica_id=replica_id,
            service_id=service,
            project_id="prj",
            stopped_at=start + timedelta(seconds=seconds),
        ),
    ]
    return meters.fold(events)[replica_id]


def test_a_replica_is_credited_to_the_versions_it_predicted_with_by_count() -> None:
    state = replica("r", T0, 10)
    assert credited_versions(state, {V1: 3, V2: 1}, []) == {
        V1: Decimal("0.75"),
        V2: Decimal("0.25"),
    }


def test_an_idle_replica_goes_to_the_version_in_use_when_it_started_else_the_next() -> None:
    spans = [
        VersionSpan(V1, T0 - timedelta(hours=2), T0 - timedelta(hours=1)),
        VersionSpan(V2, T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
    ]
    assert credited_versions(replica("r", T0, 10), {}, spans) == {V1: 1}
    assert credited_versions(replica("r", T0 + timedelta(minutes=90), 10), {}, spans) == {V2: 1}
    assert credited_versions(replica("r", T0 - timedelta(hours=3), 10), {}, spans) == {V1: 1}
    assert credited_versions(replica("r", T0, 10), {}, []) == {None: 1}


def test_runtime_is_clipped_to_the_window() -> None:
    state = replica("r", T0, 100)
    now = T0 + timedelta(days=1)
    assert clipped_seconds(state, now, None, now) == 100
    assert clipped_seconds(state, now, T0 + timedelta(seconds=30), T0 + timedelta(seconds=40)) == 10
    assert clipped_seconds(state, now, T0 + timedelta(seconds=200), now) == 0


def test_cost_per_accepted_label_divides_runtime_cost_by_labels_people_accepted() -> None:
    rows = usage_by_model(
        [(replica("r1", T0, 100), RATE), (replica("r2", T0, 50, "idle"), RATE)],
        {"r1": {V1: 10}},
        {},
        {("svc", V1): 10},
        {("svc", V1): ReviewCounts(reviewed=8, accepted_unchanged=4, auto_accepted=2)},
        now=T0 + timedelta(days=1),
        start=None,
        end=T0 + timedelta(days=1),
    )
    (idle, used) = rows
    assert (idle.service_id, idle.model, idle.cost, idle.cost_per_accepted_label) == (
        "idle",
        None,
        Decimal("0.50"),
        None,
    )
    assert (used.service_id, used.model, used.runtime_seconds, used.cost) == (
        "svc",
        V1,
        100,
        Decimal("1.00"),
    )
    assert used.cost_per_accepted_label == Decimal("0.25")
    assert used.acceptance_rate == 4 / 6
    assert used.auto_accepted_share == 2 / 8


def test_nothing_accepted_gives_no_cost_per_label_and_no_rates() -> None:
    row = ModelUsage("svc", V1, cost=Decimal("3"), reviews=ReviewCounts(reviewed=2))
    assert (row.cost_per_accepted_label, row.acceptance_rate, row.auto_accepted_share) == (
        None,
        0.0,
        0.0,
    )
    empty = ModelUsage("svc", V1, cost=Decimal("3"))
    assert (empty.cost_per_accepted_label, empty.acceptance_rate, empty.auto_accepted_share) == (
        None,
        None,
        None,
    )
    only_auto = ModelUsage("svc", V1, reviews=ReviewCounts(reviewed=3, auto_accepted=3))
    assert (only_auto.acceptance_rate, only_auto.auto_accepted_share) == (None, 1.0)
