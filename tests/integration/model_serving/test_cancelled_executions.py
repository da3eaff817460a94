"""Cancelled executions on real RabbitMQ, PostgreSQL, S3 and Triton: model-serving records
``execution.cancelled.v1`` and its workers skip those requests instead of predicting them;
what a worker takes it announces with ``prediction.started.v1``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from common.contracts import ExecutionCancelled, ItemSnapshot, PredictRequest
from common.envelope import make_event
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import TRIGGER_ROUTER
from model_serving_service import metrics
from model_serving_service.deps import Deps
from tests.integration.model_serving.conftest import (
    ModelServingService,
    register_color_model,
    solid,
)
from tests.integration.model_serving.test_worker_failures import _quiet, inference_count

STARTED = "prediction.started.v1"


async def send(
    ms: ModelServingService, service_id: str, item: ItemSnapshot, execution_id: str, attempt: int
) -> None:
    """A predict request of one attempt, as the trigger-router publishes it."""
    request = PredictRequest(
        execution_id=execution_id,
        service_id=service_id,
        project_id=ms.project_id,
        item=item,
        attempt=attempt,
    )
    event = make_event(
        request,
        source="/services/trigger-router",
        subject=item.id,
        correlationid=execution_id,
        event_id=f"{execution_id}.{attempt}",
    )
    await ms.send(service_id, item, execution_id=execution_id, body=event.to_json_bytes())


async def cancel(ms: ModelServingService, service_id: str, execution_id: str, attempt: int) -> None:
    """Publish ``execution.cancelled.v1`` as the router does; wait until it is recorded."""
    event = make_event(
        ExecutionCancelled(
            execution_id=execution_id,
            project_id=ms.project_id,
            service_id=service_id,
            item_id="item_x",
            attempt=attempt,
            reason="cancelled by request",
            cancelled_at=datetime.now(UTC),
        ),
        source="/services/trigger-router",
        correlationid=execution_id,
    )
    await publish_raw(
        ms.settings.amqp,
        ms.topology.events_exchange(TRIGGER_ROUTER),
        event.routing_key,
        event.to_json_bytes(),
    )

    async def recorded() -> bool:
        stored = await ms.runtime.pool.fetchval(
            "SELECT attempt FROM cancelled_executions WHERE execution_id = $1", execution_id
        )
        return stored is not None and stored >= attempt

    await wait_until(recorded, timeout=20, message=f"cancel of {execution_id} recorded")


def started_ids(ms: ModelServingService) -> list[tuple[str, int]]:
    return [
        (e["execution_id"], e["attempt"])
        for m in ms.events.of(STARTED)
        for e in m.body["data"]["executions"]
    ]


def _id() -> str:
    return f"exe_{uuid.uuid4().hex[:12]}"


async def test_a_cancelled_execution_queued_behind_work_is_not_predicted(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms, sleep_execute=2.0)
    # One request at a time: the second and third wait in the queue behind the first.
    service = await ms.deploy(model["id"], concurrency=1)
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    busy, cancelled, kept = _id(), _id(), _id()
    skipped_before = metrics.PREDICTIONS.labels("cancelled")._value.get()

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        for execution in (busy, cancelled, kept):
            await send(ms, service["id"], red, execution, 1)
        await cancel(ms, service["id"], cancelled, 1)
        outcomes = await ms.wait_outcomes([busy, kept], timeout=60)
        # A rerun is a new attempt: the cancel of attempt 1 does not stop it.
        await send(ms, service["id"], red, cancelled, 2)
        rerun = await ms.wait_outcomes([cancelled], timeout=60)
        await _quiet(ms, service["id"], worker)
        inferences = inference_count(triton_url, model["triton_name"])

    assert outcomes[busy]["type"] == "prelabel.prediction.completed.v1"
    assert outcomes[kept]["type"] == "prelabel.prediction.completed.v1"
    assert outcomes[kept]["data"]["attempt"] == 1
    # Attempt 1 of the cancelled execution got no outcome and never reached Triton.
    [only] = ms.outcomes(cancelled)
    assert only == rerun[cancelled]
    assert only["type"] == "prelabel.prediction.completed.v1"
    assert only["data"]["attempt"] == 2
    assert inferences == 3
    assert metrics.PREDICTIONS.labels("cancelled")._value.get() == skipped_before + 1
    assert sorted(started_ids(ms)) == sorted([(busy, 1), (kept, 1), (cancelled, 2)])
    [first] = [
        m for m in ms.events.of(STARTED) if m.body["data"]["executions"][0]["execution_id"] == busy
    ]
    assert first.body["data"]["replica_id"] == worker.replica_id
    assert first.body["data"]["service_id"] == service["id"]
    assert first.body["data"]["project_id"] == ms.project_id
    # Its request was acknowledged: nothing waits in the queue or its dead-letter queue.
    assert (await ms.service(service["id"]))["queue"]["messages"] == 0
    assert await ms.dead_letter_count(service["id"]) == 0


async def test_a_cancel_during_the_cold_start_prevents_the_prediction(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms, sleep_initialize=3.0)
    service = await ms.deploy(model["id"], concurrency=2)
    await ms.wait_status(service["id"], "ready")
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    early, kept = _id(), _id()
    await send(ms, service["id"], red, early, 1)
    await send(ms, service["id"], red, kept, 1)

    async with ms.worker(service["id"]) as worker:
        # The worker took both (announced them started) and waits for the model load.
        await ms.events.wait_for(1, routing_key=STARTED, timeout=20)
        assert not worker.ready
        await cancel(ms, service["id"], early, 1)
        assert not worker.ready, "the model loaded before the cancel was recorded"
        outcomes = await ms.wait_outcomes([kept], timeout=60)
        await _quiet(ms, service["id"], worker)
        inferences = inference_count(triton_url, model["triton_name"])

    assert sorted(started_ids(ms)) == sorted([(early, 1), (kept, 1)])
    assert outcomes[kept]["type"] == "prelabel.prediction.completed.v1"
    assert ms.outcomes(early) == []
    assert inferences == 1


async def test_cancels_are_recorded_once_and_expired_ones_are_forgotten(
    ms: ModelServingService,
) -> None:
    repo = ms.runtime.deps_as(Deps).repo
    old = make_event(
        ExecutionCancelled(
            execution_id=_id(),
            project_id=ms.project_id,
            service_id="svc_x",
            item_id="item_x",
            attempt=1,
            reason="batch cancelled",
            cancelled_at=datetime.now(UTC) - timedelta(days=30),
        ),
        source="/test",
    ).data
    assert await repo.record_cancel(old, retention_seconds=3600)
    assert not await repo.record_cancel(old, retention_seconds=3600)  # a redelivery
    await ms.runtime.pool.execute(
        "UPDATE cancelled_executions SET recorded_at = now() - interval '2 hours'"
    )
    fresh = old.model_copy(update={"execution_id": _id(), "cancelled_at": datetime.now(UTC)})
    assert await repo.record_cancel(fresh, retention_seconds=3600)
    later = fresh.model_copy(update={"attempt": 2})
    assert await repo.record_cancel(later, retention_seconds=3600)  # a later attempt's cancel

    rows = await ms.runtime.pool.fetch("SELECT execution_id, attempt FROM cancelled_executions")
    assert [(r["execution_id"], r["attempt"]) for r in rows] == [(fresh.execution_id, 2)]
    assert await repo.cancelled([(fresh.execution_id, 2), (fresh.execution_id, 3)]) == {
        fresh.execution_id
    }
    assert await repo.cancelled([(fresh.execution_id, 3)]) == set()
