"""Cancelled executions (``execution.cancelled.v1`` from the trigger-router): a prediction
arriving after its cancel stores nothing, and a cancel arriving after the prediction
takes back its annotations and task items unless a person already reviewed them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from common.contracts import ExecutionCancelled, PredictionCompleted
from common.envelope import CloudEvent, make_event
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import TRIGGER_ROUTER
from tests.integration.annotation.conftest import AnnotationService, boxes, prediction

ON_CANCEL = "on_execution_cancelled"
ON_PREDICTION = "on_prediction_completed"
OUTCOMES = ("ok", "duplicate", "cancelled", "dead_lettered")


def _id() -> str:
    return f"exe_{uuid.uuid4().hex[:12]}"


def attempt_of(event: CloudEvent[Any], attempt: int) -> CloudEvent[Any]:
    """The same prediction as model-serving publishes it for request ``attempt``."""
    data: PredictionCompleted = event.data.model_copy(update={"attempt": attempt})
    return make_event(
        data,
        source="/services/model-serving",
        subject=data.item_id,
        correlationid=data.execution_id,
    )


async def publish_cancel(svc: AnnotationService, execution_id: str, attempt: int = 1) -> None:
    """Publish ``execution.cancelled.v1`` as the router does."""
    event = make_event(
        ExecutionCancelled(
            execution_id=execution_id,
            project_id=svc.project_id,
            service_id="svc_a",
            item_id="it_x",
            attempt=attempt,
            reason="cancelled by request",
            cancelled_at=datetime.now(UTC),
        ),
        source="/services/trigger-router",
        correlationid=execution_id,
    )
    await publish_raw(
        svc.amqp_url, svc.exchange(TRIGGER_ROUTER), event.routing_key, event.to_json_bytes()
    )


def handled(svc: AnnotationService, handler: str, outcomes: tuple[str, ...] = OUTCOMES) -> float:
    metric = svc.runtime.metrics.messages
    return float(sum(metric.labels(handler, o)._value.get() for o in outcomes))


async def wait_handled(svc: AnnotationService, handler: str, target: float) -> None:
    async def reached() -> bool:
        return handled(svc, handler) >= target

    await wait_until(reached, timeout=20, message=f"{target} messages handled by {handler}")


async def _auto_task(svc: AnnotationService) -> str:
    created = await svc.http.post(
        "/tasks",
        json={"name": "review", "dataset_id": svc.ds1, "auto_add_from_services": ["svc_a"]},
        headers=svc.auth(),
    )
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


async def _task_items(svc: AnnotationService, task_id: str) -> dict[str, dict[str, Any]]:
    response = await svc.http.get(f"/tasks/{task_id}/items", headers=svc.auth())
    assert response.status_code == 200, response.text
    return {i["item_id"]: i for i in response.json()["items"]}


async def _annotations(svc: AnnotationService, execution_id: str) -> int:
    return await svc.count("SELECT count(*) FROM annotations WHERE execution_id = $1", execution_id)


async def test_a_prediction_arriving_after_its_cancel_stores_nothing(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _auto_task(svc)
    cancelled, kept = _id(), _id()
    base_cancels = handled(svc, ON_CANCEL)
    await publish_cancel(svc, cancelled)
    await wait_handled(svc, ON_CANCEL, base_cancels + 1)
    skipped = handled(svc, ON_PREDICTION, ("cancelled",))
    base = handled(svc, ON_PREDICTION)

    late = prediction(svc.project_id, svc.ds1, "it_c", boxes(2), execution_id=cancelled)
    await svc.publish(attempt_of(late, 1))
    await svc.publish(late)  # from a worker that does not echo the attempt: cancelled too
    await svc.publish(
        attempt_of(prediction(svc.project_id, svc.ds1, "it_k", boxes(1), execution_id=kept), 1)
    )
    await wait_handled(svc, ON_PREDICTION, base + 3)

    assert await _annotations(svc, cancelled) == 0
    assert await _annotations(svc, kept) == 1
    assert set(await _task_items(svc, task_id)) == {"it_k"}
    assert handled(svc, ON_PREDICTION, ("cancelled",)) == skipped + 2
    added = await svc.events.wait_for(1, routing_key="task_item.added.v1")
    assert [m.body["data"]["item_id"] for m in added] == ["it_k"]

    # A rerun is the next attempt: its prediction is stored as usual.
    await svc.publish(attempt_of(late, 2))
    await wait_handled(svc, ON_PREDICTION, base + 4)
    assert await _annotations(svc, cancelled) == 2
    assert set(await _task_items(svc, task_id)) == {"it_c", "it_k"}


async def test_a_cancel_after_the_prediction_removes_its_unreviewed_annotations(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _auto_task(svc)
    unreviewed, reviewed, edited = _id(), _id(), _id()
    for execution, item in ((unreviewed, "it_u"), (reviewed, "it_r"), (edited, "it_e")):
        await svc.publish(
            attempt_of(
                prediction(svc.project_id, svc.ds1, item, boxes(2), execution_id=execution), 1
            )
        )

    async def stored() -> bool:
        return await svc.count("SELECT count(*) FROM task_items") == 3

    await wait_until(stored, timeout=20, message="three predictions stored and added")
    approve = await svc.http.post(
        f"/tasks/{task_id}/items/it_r/review",
        json={"action": "approve", "reviewer": "ana"},
        headers=svc.auth(),
    )
    assert approve.status_code == 200, approve.text
    ann = (await _task_items(svc, task_id))["it_e"]["annotations"][0]["id"]
    edit = await svc.http.patch(f"/annotations/{ann}", json={"label": "dog"}, headers=svc.auth())
    assert edit.status_code == 200, edit.text
    base = handled(svc, ON_CANCEL)
    duplicate = svc.runtime.metrics.messages.labels(ON_CANCEL, "duplicate")
    duplicates = duplicate._value.get()

    for execution in (unreviewed, reviewed, edited):
        await publish_cancel(svc, execution)
    await publish_cancel(svc, unreviewed)  # a redelivery finds nothing left to take back
    await wait_handled(svc, ON_CANCEL, base + 4)

    assert await _annotations(svc, unreviewed) == 0
    items = await _task_items(svc, task_id)
    assert set(items) == {"it_r", "it_e"}
    assert items["it_r"]["status"] == "approved"
    assert await _annotations(svc, reviewed) == 2
    assert await _annotations(svc, edited) == 2
    assert duplicate._value.get() == duplicates + 1
    listed = await svc.http.get("/annotations", params={"item_id": "it_u"}, headers=svc.auth())
    assert listed.json() == []


async def test_cancels_racing_their_predictions_keep_no_annotations(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    executions = [_id() for _ in range(24)]
    base_cancels, base_predictions = handled(svc, ON_CANCEL), handled(svc, ON_PREDICTION)

    async def both(n: int, execution: str) -> None:
        event = attempt_of(
            prediction(svc.project_id, svc.ds1, f"it_{n}", boxes(3), execution_id=execution), 1
        )
        # Half the cancels go first, half after: both orders, concurrently.
        if n % 2:
            await asyncio.gather(publish_cancel(svc, execution), svc.publish(event))
        else:
            await asyncio.gather(svc.publish(event), publish_cancel(svc, execution))

    await asyncio.gather(*(both(n, e) for n, e in enumerate(executions)))
    await wait_handled(svc, ON_CANCEL, base_cancels + len(executions))
    await wait_handled(svc, ON_PREDICTION, base_predictions + len(executions))

    left = await svc.count(
        "SELECT count(*) FROM annotations WHERE execution_id = ANY($1::text[])", executions
    )
    assert left == 0
    recorded = await svc.count(
        "SELECT count(*) FROM cancelled_executions WHERE execution_id = ANY($1::text[])",
        executions,
    )
    assert recorded == len(executions)
