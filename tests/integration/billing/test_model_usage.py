"""Cost per accepted label per model version, on the real broker and database: replica,
prediction and review events in, ``GET /usage/models`` out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from prometheus_client import REGISTRY

from common.contracts import ModelRef, PredictionCompleted, TaskItemReviewed
from common.envelope import CloudEvent, make_event
from common.testing.waits import wait_until
from common.topology import ANNOTATION
from tests.conftest import AuthService
from tests.integration.billing.conftest import BillingService, replica_started, replica_stopped

T = datetime(2025, 2, 1, 10, 0, tzinfo=UTC)
DIGITS = ModelRef(name="digits", model_id="mdl_digits", version="1")
FACES = ModelRef(name="faces", model_id="mdl_faces", version="3")


def _handled(handler: str) -> float:
    return sum(
        REGISTRY.get_sample_value(
            "prelabel_billing_messages_handled_total", {"handler": handler, "outcome": outcome}
        )
        or 0.0
        for outcome in ("ok", "duplicate", "stale", "dead_lettered")
    )


def _prediction(
    project: str, execution: str, service: str, replica: str, model: ModelRef, at: datetime
) -> CloudEvent[Any]:
    return make_event(
        PredictionCompleted(
            execution_id=execution,
            service_id=service,
            project_id=project,
            dataset_id="ds",
            item_id=f"it_{execution}",
            replica_id=replica,
            model=model,
            started_at=at,
            finished_at=at,
        ),
        source="/services/model-serving",
    )


def _review(
    project: str,
    item: str,
    status: Literal["approved", "corrected", "discarded"],
    at: datetime,
    *,
    model: ModelRef | None = DIGITS,
    service: str = "svc_a",
    unchanged: bool = False,
    auto: bool = False,
) -> CloudEvent[Any]:
    return make_event(
        TaskItemReviewed(
            task_id="task_1",
            project_id=project,
            item_id=item,
            status=status,
            reviewer="pipeline" if auto else "ann@example.com",
            execution_id=f"exe_{item}" if model else None,
            service_id=service if model else None,
            model=model,
            accepted_unchanged=unchanged,
            auto_accepted=auto,
        ),
        source="/services/annotation",
        time=at,
    )


async def _publish_all(svc: BillingService, events: list[tuple[CloudEvent[Any], str]]) -> None:
    handlers = ("on_replica_started", "on_replica_stopped", "on_prediction_completed")
    before = {h: _handled(h) for h in (*handlers, "on_task_item_reviewed")}
    expected = dict.fromkeys(before, 0)
    for event, producer in events:
        await svc.publish(event, producer)
        expected[f"on_{event.routing_key.rsplit('.', 1)[0].replace('.', '_')}"] += 1

    async def all_handled() -> bool:
        return all(_handled(h) - before[h] == n for h, n in expected.items())

    await wait_until(all_handled, timeout=20, message="every event handled")


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    cost_per = row["cost_per_accepted_label"]
    return (
        Decimal(row["runtime_seconds"]),
        Decimal(row["cost"]),
        row["predictions"],
        row["reviewed"],
        row["accepted_unchanged"],
        row["auto_accepted"],
        None if cost_per is None else Decimal(cost_per),
    )


async def test_cost_per_accepted_label_per_model_version_under_redelivery_and_late_reviews(
    billing_service: BillingService, auth_service: AuthService
) -> None:
    svc = billing_service
    p = svc.project_id
    other, other_key = await auth_service.new_project()
    approved_late = _review(p, "i3", "approved", T + timedelta(seconds=301), unchanged=True)
    first_i1 = _review(p, "i1", "approved", T + timedelta(seconds=300), unchanged=True)
    events: list[tuple[CloudEvent[Any], str]] = [
        # svc_a ran digits v1: r1 predicted (100 s at 0.01), r2 never did (50 s, credited
        # to the version svc_a had in use when it started).
        (replica_started(p, "r1", T), "model_serving"),
        (replica_stopped(p, "r1", T + timedelta(seconds=100)), "model_serving"),
        (replica_started(p, "r2", T + timedelta(seconds=200)), "model_serving"),
        (replica_stopped(p, "r2", T + timedelta(seconds=250)), "model_serving"),
        # svc_b ran faces v3 on a gpu-t4 (10 s at 0.1).
        (replica_started(p, "r3", T, "gpu-t4", "svc_b"), "model_serving"),
        (replica_stopped(p, "r3", T + timedelta(seconds=10), "gpu-t4", "svc_b"), "model_serving"),
        *(
            (
                _prediction(p, f"e{n}", "svc_a", "r1", DIGITS, T + timedelta(seconds=n)),
                "model_serving",
            )
            for n in range(1, 5)
        ),
        (_prediction(p, "e1", "svc_a", "r1", DIGITS, T + timedelta(seconds=1)), "model_serving"),
        (_prediction(p, "e9", "svc_b", "r3", FACES, T + timedelta(seconds=5)), "model_serving"),
        # Reviews of digits v1: i1 approved unchanged (delivered twice); i2 corrected, then
        # approved unchanged later (replaces); i3 corrected after an approval that arrives
        # late (changes nothing); i4 auto-accepted; i5 added by hand without a model.
        (first_i1, ANNOTATION),
        (first_i1, ANNOTATION),
        (_review(p, "i2", "corrected", T + timedelta(seconds=300)), ANNOTATION),
        (_review(p, "i2", "approved", T + timedelta(seconds=302), unchanged=True), ANNOTATION),
        (_review(p, "i3", "corrected", T + timedelta(seconds=302)), ANNOTATION),
        (approved_late, ANNOTATION),
        (_review(p, "i4", "approved", T + timedelta(seconds=300), auto=True), ANNOTATION),
        (_review(p, "i5", "approved", T + timedelta(seconds=300), model=None), ANNOTATION),
        # faces v3: its one review was a correction.
        (
            _review(p, "f1", "corrected", T + timedelta(seconds=300), model=FACES, service="svc_b"),
            ANNOTATION,
        ),
        # Another project's replica, prediction and review on the same service id.
        (replica_started(other, "rx", T), "model_serving"),
        (replica_stopped(other, "rx", T + timedelta(seconds=1000)), "model_serving"),
        (_prediction(other, "ex", "svc_a", "rx", DIGITS, T), "model_serving"),
        (_review(other, "i1", "approved", T + timedelta(seconds=300), unchanged=True), ANNOTATION),
    ]
    await _publish_all(svc, events)

    report = await svc.get("/usage/models")
    assert (report["project_id"], report["from"]) == (p, None)
    rows = {
        (r["service_id"], r["model"]["name"], r["model"]["version"]): r for r in report["models"]
    }
    assert set(rows) == {("svc_a", "digits", "1"), ("svc_b", "faces", "3")}
    digits = rows["svc_a", "digits", "1"]
    assert _figures(digits) == (150, Decimal("1.50"), 4, 4, 2, 1, Decimal("0.75"))
    assert digits["model"]["model_id"] == "mdl_digits"
    assert (digits["acceptance_rate"], digits["auto_accepted_share"]) == (2 / 3, 0.25)
    assert isinstance(digits["cost"], str)
    faces = rows["svc_b", "faces", "3"]
    assert _figures(faces) == (10, Decimal("1.0"), 1, 1, 0, 0, None)
    assert (faces["acceptance_rate"], faces["auto_accepted_share"]) == (0.0, 0.0)

    # A window: r2's runtime and the reviews fall inside it, no prediction does.
    window = await svc.get(
        "/usage/models",
        **{
            "from": (T + timedelta(seconds=200)).isoformat(),
            "to": (T + timedelta(hours=1)).isoformat(),
        },
    )
    digits_then, faces_then = window["models"]
    assert _figures(digits_then) == (50, Decimal("0.50"), 0, 4, 2, 1, Decimal("0.25"))
    assert _figures(faces_then) == (0, 0, 0, 1, 0, 0, None)

    theirs = await svc.http.get("/usage/models", headers=svc.auth(other_key))
    ((their_row),) = theirs.json()["models"]
    assert _figures(their_row) == (1000, Decimal("10.00"), 1, 1, 1, 0, Decimal("10.00"))

    backwards = await svc.http.get(
        "/usage/models",
        params={"from": T.isoformat(), "to": T.isoformat()},
        headers=svc.auth(),
    )
    assert backwards.status_code == 422
    assert "from must be before to" in backwards.text
    ancient = await svc.http.get(
        "/usage/models", params={"from": "0001-01-01T00:00:00+05:00"}, headers=svc.auth()
    )
    assert ancient.status_code == 422, ancient.text
    assert (await svc.http.get("/usage/models")).status_code == 401
