"""Runtime metering and budgets on the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY

from billing_service.deps import Deps as BillingDeps
from common.contracts import ModelRef, PredictionCompleted
from common.envelope import make_event
from common.testing.waits import wait_until
from tests.conftest import AuthService
from tests.integration.billing.conftest import BillingService, replica_started, replica_stopped

T = datetime(2025, 1, 10, 23, 59, tzinfo=UTC)


def _handled(handler: str, *outcomes: str) -> float:
    return sum(
        REGISTRY.get_sample_value(
            "prelabel_billing_messages_handled_total", {"handler": handler, "outcome": outcome}
        )
        or 0.0
        for outcome in outcomes
    )


def _replica_messages() -> float:
    return _handled("on_replica_started", "ok") + _handled("on_replica_stopped", "ok")


def _prediction(project_id: str, execution: str, service: str, at: datetime) -> Any:
    return make_event(
        PredictionCompleted(
            execution_id=execution,
            service_id=service,
            project_id=project_id,
            dataset_id="ds",
            item_id="it",
            replica_id="r1",
            model=ModelRef(name="m", model_id="mdl", version="1"),
            started_at=at,
            finished_at=at,
        ),
        source="/services/model-serving",
    )


def _d(value: str) -> Decimal:
    return Decimal(value)


async def test_totals_are_exact_under_duplicates_and_reordering(
    billing_service: BillingService,
) -> None:
    svc = billing_service
    p = svc.project_id
    r1_start = replica_started(p, "r1", T)  # 60 s on Jan 10, 40 s on Jan 11
    r1_stop = replica_stopped(p, "r1", T + timedelta(seconds=100))
    r2_start = replica_started(p, "r2", T + timedelta(seconds=10.25), "gpu-t4")
    r2_stop = replica_stopped(p, "r2", T + timedelta(seconds=40.5), "gpu-t4")
    # r3 only ever reports its stop, which carries its start.
    r3_stop = replica_stopped(
        p,
        "r3",
        T + timedelta(seconds=3607.5),
        service="svc_b",
        started_at=T + timedelta(seconds=3600),
    )
    r4_stop = replica_stopped(p, "r4", T + timedelta(seconds=7220), "gpu-t4", "svc_b")
    r4_start = replica_started(p, "r4", T + timedelta(seconds=7200), "gpu-t4", "svc_b")
    r4_start_again = replica_started(p, "r4", T + timedelta(seconds=7200), "gpu-t4", "svc_b")
    sequence = [
        r1_stop,
        r4_stop,
        r2_start,
        r1_start,
        r3_stop,
        r2_stop,
        r1_stop,
        r2_start,
        r4_start,
        r4_start_again,
        r1_start,
    ]
    predictions = [
        _prediction(p, "exe_1", "svc_a", T + timedelta(seconds=20)),
        _prediction(p, "exe_2", "svc_b", T + timedelta(seconds=3600)),
    ]
    replicas_before = _replica_messages()
    predictions_before = _handled("on_prediction_completed", "ok", "duplicate")

    for event in sequence:
        await svc.publish(event)
    for event in [predictions[0], *predictions, predictions[1]]:
        await svc.publish(event)

    async def all_handled() -> bool:
        return (
            _replica_messages() - replicas_before == len(sequence)
            and _handled("on_prediction_completed", "ok", "duplicate") - predictions_before == 4
        )

    await wait_until(all_handled, timeout=20, message="every event handled")
    usage = await svc.get("/usage", since="2025-01-10", until="2025-01-11")
    rows = [
        (r["service_id"], r["day"], _d(r["runtime_seconds"]), _d(r["cost"]), r["predictions"])
        for r in usage["rows"]
    ]
    assert rows == [
        ("svc_a", "2025-01-10", _d("90.25"), _d("3.625"), 1),
        ("svc_a", "2025-01-11", _d("40"), _d("0.40"), 0),
        ("svc_b", "2025-01-11", _d("27.5"), _d("2.075"), 1),
    ]
    total = usage["total"]
    assert (_d(total["runtime_seconds"]), _d(total["cost"]), total["predictions"]) == (
        _d("157.75"),
        _d("6.1"),
        2,
    )
    assert isinstance(total["cost"], str)  # money never travels as a float
    replicas = await svc.get("/usage/replicas", since="2025-01-10", until="2025-01-11")
    assert {r["replica_id"]: _d(r["runtime_seconds"]) for r in replicas} == {
        "r1": 100,
        "r2": _d("30.25"),
        "r3": _d("7.5"),
        "r4": 20,
    }
    assert {r["replica_id"]: r["instance_type"] for r in replicas}["r4"] == "gpu-t4"
    budget = await svc.get("/budget")
    assert (budget["budget"], _d(budget["spent"]), budget["exhausted"]) == (None, _d("6.1"), False)
    only_b = await svc.get("/usage", since="2025-01-10", until="2025-01-11", service_id="svc_b")
    assert [r["service_id"] for r in only_b["rows"]] == ["svc_b"]


async def test_a_running_replica_is_metered_up_to_now_then_closed_by_its_stop(
    billing_service: BillingService,
) -> None:
    svc = billing_service
    start = datetime.now(UTC) - timedelta(seconds=30)
    await svc.publish(replica_started(svc.project_id, "live", start))

    async def running() -> list[Any]:
        replicas: list[Any] = await svc.get("/usage/replicas")
        return replicas

    (live,) = await wait_until(running, message="replica metered")
    assert live["running"] is True
    assert _d(live["runtime_seconds"]) >= 30
    burn = await svc.get("/burn-rate")
    assert (burn["running_replicas"], _d(burn["per_second"]), _d(burn["per_hour"])) == (
        1,
        _d("0.01"),
        _d("36"),
    )

    await svc.publish(replica_stopped(svc.project_id, "live", start + timedelta(seconds=12)))

    async def closed() -> bool:
        (replica,) = await svc.get("/usage/replicas")
        return replica["running"] is False

    await wait_until(closed, message="replica closed by its stop")
    (replica,) = await svc.get("/usage/replicas")
    assert _d(replica["runtime_seconds"]) == 12
    assert _d((await svc.get("/budget"))["spent"]) == _d("0.12")
    assert (await svc.get("/burn-rate"))["running_replicas"] == 0


async def test_an_exhausted_budget_is_announced_once_and_a_top_up_restores_it(
    billing_service: BillingService, auth_service: AuthService
) -> None:
    svc = billing_service
    set_budget = await svc.http.put("/budget", json={"amount": "2.50"}, headers=svc.auth())
    assert set_budget.status_code == 200, set_budget.text
    assert _d(set_budget.json()["budget"]) == _d("2.50")
    # A gpu-t4 replica running for 30 s already cost 3.0: over budget at once, and still
    # burning while the charger runs every 0.2 s.
    await svc.publish(
        replica_started(svc.project_id, "hot", datetime.now(UTC) - timedelta(seconds=30), "gpu-t4")
    )
    exhausted = await svc.events.wait_for(1, routing_key="budget.exhausted.v1")
    data = exhausted[0].body["data"]
    assert (data["project_id"], _d(data["budget"])) == (svc.project_id, _d("2.50"))
    assert _d(data["spent"]) >= 3
    charger = svc.runtime.deps_as(BillingDeps).charger
    rounds = charger.rounds

    async def charged_more() -> bool:
        return bool(charger.rounds >= rounds + 5)

    await wait_until(charged_more, message="five more charging rounds")
    assert len(svc.events.of("budget.exhausted.v1")) == 1
    budget = await svc.get("/budget")
    assert budget["exhausted"] is True
    assert _d(budget["remaining"]) == 0

    topped = await svc.http.post("/budget/top-up", json={"amount": 100}, headers=svc.auth())
    assert topped.status_code == 200, topped.text
    assert topped.json()["exhausted"] is False
    assert _d(topped.json()["budget"]) == _d("102.50")
    restored = await svc.events.wait_for(1, routing_key="budget.restored.v1")
    assert _d(restored[0].body["data"]["budget"]) == _d("102.50")
    burn = await svc.get("/burn-rate")
    assert _d(burn["per_second"]) == _d("0.1")
    assert burn["seconds_left"] is not None
    assert _d(burn["seconds_left"]) > 900

    # Lowering the budget under the spending exhausts it again: once more, not twice.
    await svc.http.put("/budget", json={"amount": "1"}, headers=svc.auth())
    await svc.events.wait_for(2, routing_key="budget.exhausted.v1")
    rounds = charger.rounds
    await wait_until(charged_more, message="five more charging rounds")
    assert len(svc.events.of("budget.exhausted.v1")) == 2

    bad = await svc.http.post("/budget/top-up", json={"amount": "-5"}, headers=svc.auth())
    assert bad.status_code == 422
    _, other_key = await auth_service.new_project()
    other = await svc.http.get("/budget", headers=svc.auth(other_key))
    assert (other.json()["budget"], _d(other.json()["spent"])) == (None, 0)
    assert (await svc.http.get("/budget")).status_code == 401
