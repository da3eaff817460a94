"""Metering arithmetic without servers, including order independence as properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_service.domain import budgets, meters
from billing_service.domain import usage as usage_rules
from billing_service.domain.errors import BillingError
from billing_service.domain.meters import ReplicaState
from common.contracts import ReplicaStarted, ReplicaStopped

T0 = datetime(2026, 3, 1, 23, 0, 0, tzinfo=UTC)
RATES = {"cpu-small": Decimal("0.0001"), "gpu-t4": Decimal("0.0010")}


def started(
    replica: str, at: datetime, kind: str = "cpu-small", service: str = "svc"
) -> ReplicaStarted:
    return ReplicaStarted(
        replica_id=replica, service_id=service, project_id="prj", instance_type=kind, started_at=at
    )


def stopped(
    replica: str,
    at: datetime,
    kind: str = "cpu-small",
    service: str = "svc",
    started_at: datetime | None = None,
) -> ReplicaStopped:
    return ReplicaStopped(
        replica_id=replica,
        service_id=service,
        project_id="prj",
        instance_type=kind,
        stopped_at=at,
        started_at=started_at,
    )


def test_seconds_are_exact_to_the_microsecond() -> None:
    assert meters.seconds_between(T0, T0 + timedelta(seconds=1, microseconds=1)) == Decimal(
        "1.000001"
    )
    assert meters.seconds_between(T0, T0 - timedelta(seconds=5)) == 0


def test_a_closed_replica_costs_its_runtime_times_its_rate() -> None:
    state = meters.fold([started("r1", T0, "gpu-t4"), stopped("r1", T0 + timedelta(seconds=90))])[
        "r1"
    ]
    rate = meters.rate_for(state.instance_type, RATES)

    assert state.runtime_seconds(T0 + timedelta(days=9)) == Decimal(90)
    assert meters.cost(state.runtime_seconds(T0), rate) == Decimal("0.0900")
    assert not state.running


def test_a_start_without_stop_is_metered_up_to_now_and_closed_by_its_stop() -> None:
    state = meters.apply_started(None, started("r1", T0))
    assert state.running
    assert state.runtime_seconds(T0 + timedelta(seconds=30)) == 30
    closed = meters.apply_stopped(state, stopped("r1", T0 + timedelta(seconds=12)))
    assert closed.runtime_seconds(T0 + timedelta(hours=5)) == 12


def test_a_stop_before_its_start_is_held_until_the_start_arrives() -> None:
    only_stop = meters.apply_stopped(None, stopped("r1", T0 + timedelta(seconds=40)))
    assert only_stop.runtime_seconds(T0 + timedelta(hours=1)) == 0
    assert not only_stop.running
    both = meters.apply_started(only_stop, started("r1", T0))
    assert both.runtime_seconds(T0 + timedelta(hours=1)) == 40


def test_a_stop_carrying_its_start_meters_alone_and_a_real_start_wins() -> None:
    stop = stopped("r1", T0 + timedelta(seconds=40), started_at=T0 + timedelta(seconds=10))
    alone = meters.apply_stopped(None, stop)
    assert alone.runtime_seconds(T0) == 30
    corrected = meters.apply_started(alone, started("r1", T0 + timedelta(seconds=5)))
    assert corrected.runtime_seconds(T0) == 35


def test_a_start_s_instance_type_wins_over_a_stop_s() -> None:
    a = meters.fold(
        [stopped("r1", T0 + timedelta(seconds=1), "cpu-small"), started("r1", T0, "gpu-t4")]
    )
    b = meters.fold(
        [started("r1", T0, "gpu-t4"), stopped("r1", T0 + timedelta(seconds=1), "cpu-small")]
    )
    assert a["r1"].instance_type == b["r1"].instance_type == "gpu-t4"


def test_unknown_instance_types_pay_the_highest_rate() -> None:
    assert meters.rate_for("tpu-huge", RATES) == Decimal("0.0010")
    assert meters.rate_for("cpu-small", RATES) == Decimal("0.0001")


def test_runtime_is_split_at_utc_midnight() -> None:
    days = usage_rules.split_by_day(T0 + timedelta(minutes=30), T0 + timedelta(days=1, hours=2))
    assert days == {
        date(2026, 3, 1): Decimal(1800),
        date(2026, 3, 2): Decimal(86400),
        date(2026, 3, 3): Decimal(3600),
    }


def test_usage_per_service_and_day_with_predictions() -> None:
    states = meters.fold(
        [
            started("r1", T0, service="svc_a"),
            stopped("r1", T0 + timedelta(hours=1, seconds=10), service="svc_a"),
            started("r2", T0 + timedelta(hours=1), "gpu-t4", service="svc_b"),
        ]
    )
    replicas = [(s, meters.rate_for(s.instance_type, RATES)) for s in states.values()]
    now = T0 + timedelta(hours=1, seconds=10)
    predictions = {("svc_a", date(2026, 3, 2)): 4, ("svc_c", date(2026, 3, 2)): 1}

    rows = usage_rules.usage_by_service_day(replicas, now, predictions)

    assert [(u.service_id, u.day, u.runtime_seconds, u.cost, u.predictions) for u in rows] == [
        ("svc_a", date(2026, 3, 1), Decimal(3600), Decimal("0.3600"), 0),
        ("svc_a", date(2026, 3, 2), Decimal(10), Decimal("0.0010"), 4),
        ("svc_b", date(2026, 3, 2), Decimal(10), Decimal("0.0100"), 0),
        ("svc_c", date(2026, 3, 2), Decimal(0), Decimal(0), 1),
    ]
    assert usage_rules.spent(replicas, now) == Decimal("0.3710")
    assert usage_rules.burn_rate(replicas) == Decimal("0.0010")
    only_2nd = usage_rules.usage_by_service_day(replicas, now, since=date(2026, 3, 2))
    assert {u.day for u in only_2nd} == {date(2026, 3, 2)}


@pytest.mark.parametrize(
    ("budget", "spent", "exhausted", "expected"),
    [
        (Decimal(10), Decimal("9.99"), False, None),
        (Decimal(10), Decimal(10), False, "exhausted"),
        (Decimal(10), Decimal(11), True, None),
        (Decimal(12), Decimal(11), True, "restored"),
        (None, Decimal(1000), False, None),
        (None, Decimal(1000), True, "restored"),
        (Decimal(0), Decimal(0), False, "exhausted"),
    ],
)
def test_budget_transitions(
    budget: Decimal | None, spent: Decimal, exhausted: bool, expected: str | None
) -> None:
    assert budgets.budget_transition(budget, spent, exhausted) == expected


@pytest.mark.parametrize("amount", ["-1", "NaN", "Infinity", "1e13"])
def test_bad_amounts_are_refused(amount: str) -> None:
    with pytest.raises(BillingError):
        budgets.parse_amount(Decimal(amount))


def test_a_top_up_must_be_positive() -> None:
    with pytest.raises(BillingError):
        budgets.parse_amount(Decimal(0), allow_zero=False)
    assert budgets.parse_amount(Decimal(0)) == 0


# --------------------------------------------------------------------------- properties

instants = st.integers(min_value=0, max_value=3 * 86_400 * 1_000_000).map(
    lambda us: T0 + timedelta(microseconds=us)
)


@st.composite
def replica_histories(draw: st.DrawFn) -> list[ReplicaStarted | ReplicaStopped]:
    """Events of a few replicas: each has a start and maybe a stop (which may carry the
    start), sometimes reported twice with different times."""
    events: list[ReplicaStarted | ReplicaStopped] = []
    for n in range(draw(st.integers(min_value=1, max_value=5))):
        replica = f"r{n}"
        kind = draw(st.sampled_from(["cpu-small", "gpu-t4", "mystery"]))
        service = draw(st.sampled_from(["svc_a", "svc_b"]))
        begin = draw(instants)
        events.append(started(replica, begin, kind, service))
        if draw(st.booleans()):
            # a second report of the start that disagrees on the time (clock jitter)
            events.append(started(replica, draw(instants), kind, service))
        if draw(st.booleans()):
            end = begin + timedelta(microseconds=draw(st.integers(0, 2 * 86_400 * 1_000_000)))
            carries = draw(st.booleans())
            events.append(stopped(replica, end, kind, service, begin if carries else None))
            if draw(st.booleans()):
                events.append(stopped(replica, draw(instants), kind, service))
    return events


def _totals(events: list[ReplicaStarted | ReplicaStopped], now: datetime) -> tuple[object, ...]:
    states = meters.fold(events)
    replicas = [(s, meters.rate_for(s.instance_type, RATES)) for s in states.values()]
    usage = usage_rules.usage_by_service_day(replicas, now)
    return (
        sorted(states.values(), key=lambda s: s.replica_id),
        usage_rules.spent(replicas, now),
        [(u.service_id, u.day, u.runtime_seconds, u.cost) for u in usage],
    )


@settings(max_examples=200, deadline=None)
@given(history=replica_histories(), data=st.data())
def test_totals_do_not_depend_on_order_or_duplicates(
    history: list[ReplicaStarted | ReplicaStopped], data: st.DataObject
) -> None:
    now = T0 + timedelta(days=4)
    duplicated = history + data.draw(st.lists(st.sampled_from(history), max_size=6))
    shuffled = data.draw(st.permutations(duplicated))

    assert _totals(shuffled, now) == _totals(history, now)


@settings(max_examples=200, deadline=None)
@given(history=replica_histories())
def test_per_day_usage_adds_up_to_the_replica_totals(
    history: list[ReplicaStarted | ReplicaStopped],
) -> None:
    now = T0 + timedelta(days=4)
    states = meters.fold(history)
    replicas = [(s, meters.rate_for(s.instance_type, RATES)) for s in states.values()]
    usage = usage_rules.usage_by_service_day(replicas, now)

    assert sum((u.runtime_seconds for u in usage), Decimal(0)) == sum(
        (s.runtime_seconds(now) for s in states.values()), Decimal(0)
    )
    assert sum((u.cost for u in usage), Decimal(0)) == usage_rules.spent(replicas, now)


@given(a=instants, b=instants)
def test_day_split_is_exact(a: datetime, b: datetime) -> None:
    start, end = min(a, b), max(a, b)
    assert sum(usage_rules.split_by_day(start, end).values(), Decimal(0)) == meters.seconds_between(
        start, end
    )


def test_state_without_any_start_is_not_running() -> None:
    state = ReplicaState("r", "p", "s", "cpu-small", stopped_at=T0)
    assert state.interval(T0 + timedelta(hours=1)) is None
