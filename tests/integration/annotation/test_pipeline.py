"""A pipeline's task node: ``add_task_item.v1`` puts an item into a task with its
prediction's annotations, exactly once, on the real broker and database."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
from prometheus_client import REGISTRY

from common.contracts.trigger_router import Origin
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER
from tests.integration.annotation.conftest import (
    AnnotationService,
    add_task_item,
    boxes,
    prediction,
)


def _handled(handler: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "prelabel_annotation_messages_handled_total", {"handler": handler, "outcome": outcome}
    )
    return value or 0.0


async def _task(svc: AnnotationService, dataset_id: str | None = None, **extra: Any) -> str:
    created = await svc.http.post(
        "/tasks",
        json={"name": "review", "dataset_id": dataset_id or svc.ds1, **extra},
        headers=svc.auth(),
    )
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


async def _settled(handler: str, outcome: str, before: float, more: int = 1) -> None:
    async def reached() -> bool:
        return _handled(handler, outcome) >= before + more

    await wait_until(reached, message=f"{handler}: {more} more {outcome}")


async def test_command_and_prediction_store_annotations_and_item_once_in_either_order(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _task(svc)
    # Command first (delivered twice), then its prediction.
    first = add_task_item(
        svc.project_id, task_id, svc.ds1, "item_a", boxes(3), execution_id="exe_a"
    )
    origin = Origin(
        way="pipeline",
        id="pipe_1",
        pipeline_execution_id=first.data.pipeline_execution_id,
        node_id="predict",
    )
    ok, dup = _handled("on_add_task_item", "ok"), _handled("on_add_task_item", "duplicate")
    await svc.send(first)
    await svc.send(first)
    await _settled("on_add_task_item", "ok", ok)
    await _settled("on_add_task_item", "duplicate", dup)
    predictions_dup = _handled("on_prediction_completed", "duplicate")
    await svc.publish(
        prediction(svc.project_id, svc.ds1, "item_a", boxes(3), execution_id="exe_a", origin=origin)
    )
    await _settled("on_prediction_completed", "duplicate", predictions_dup)
    # Prediction first, then its command (delivered twice).
    second = add_task_item(
        svc.project_id, task_id, svc.ds1, "item_b", boxes(2), execution_id="exe_b"
    )
    predictions_ok = _handled("on_prediction_completed", "ok")
    second_origin = origin.model_copy(
        update={"pipeline_execution_id": second.data.pipeline_execution_id}
    )
    await svc.publish(
        prediction(
            svc.project_id, svc.ds1, "item_b", boxes(2), execution_id="exe_b", origin=second_origin
        )
    )
    await _settled("on_prediction_completed", "ok", predictions_ok)
    ok, dup = _handled("on_add_task_item", "ok"), _handled("on_add_task_item", "duplicate")
    await svc.send(second)
    await svc.send(second)
    await _settled("on_add_task_item", "ok", ok)
    await _settled("on_add_task_item", "duplicate", dup)

    assert await svc.count("SELECT count(*) FROM annotations WHERE execution_id = 'exe_a'") == 3
    assert await svc.count("SELECT count(*) FROM annotations WHERE execution_id = 'exe_b'") == 2
    rows = await svc.runtime.pool.fetch(
        "SELECT item_id, status, pipeline_execution_id, node_id FROM task_items ORDER BY item_id"
    )
    assert [(r["item_id"], r["status"], r["node_id"]) for r in rows] == [
        ("item_a", "pending-review", "task"),
        ("item_b", "pending-review", "task"),
    ]
    assert rows[0]["pipeline_execution_id"] == first.data.pipeline_execution_id
    created = await svc.events.wait_for(2, routing_key="annotation.created.v2")
    assert sorted(m.body["data"]["item_id"] for m in created) == ["item_a", "item_b"]

    async def both_announced() -> bool:
        return len({m.body["id"] for m in svc.events.of("task_item.added.v1")}) == 2

    await wait_until(both_announced, message="task_item.added.v1 of both items")
    added = svc.events.of("task_item.added.v1")
    assert {m.body["data"]["pipeline_execution_id"] for m in added} == {
        first.data.pipeline_execution_id,
        second.data.pipeline_execution_id,
    }
    assert {m.body["data"]["status"] for m in added} == {"pending-review"}
    # The origin is stored and shown; the predict node comes with the prediction.
    listed = await svc.http.get("/annotations", params={"item_id": "item_a"}, headers=svc.auth())
    assert {tuple(a["origin"].items()) for a in listed.json()} == {
        tuple(origin.model_dump().items())
    }
    items = await svc.http.get(f"/tasks/{task_id}/items", headers=svc.auth())
    by_item = {i["item_id"]: i for i in items.json()["items"]}
    assert [a["origin"] for a in by_item["item_b"]["annotations"]] == [
        second_origin.model_dump()
    ] * 2


async def test_predictions_of_each_way_record_their_origin(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    ok = _handled("on_prediction_completed", "ok")
    await svc.publish(
        prediction(
            svc.project_id,
            svc.ds1,
            "item_t",
            boxes(1),
            origin=Origin(way="trigger", id="trg_1"),
        )
    )
    await svc.publish(prediction(svc.project_id, svc.ds1, "item_n", boxes(1)))
    await _settled("on_prediction_completed", "ok", ok, 2)

    trigger = await svc.http.get("/annotations", params={"item_id": "item_t"}, headers=svc.auth())
    plain = await svc.http.get("/annotations", params={"item_id": "item_n"}, headers=svc.auth())
    assert trigger.json()[0]["origin"] == {
        "way": "trigger",
        "id": "trg_1",
        "pipeline_execution_id": None,
        "node_id": None,
    }
    assert plain.json()[0]["origin"] is None
    one = await svc.http.get(f"/annotations/{trigger.json()[0]['id']}", headers=svc.auth())
    assert one.json()["origin"]["id"] == "trg_1"


async def test_commands_naming_a_task_outside_the_project_or_dataset_are_dead_lettered(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _task(svc)
    other_project = f"prj_{uuid.uuid4().hex[:8]}"
    commands = [
        add_task_item(other_project, task_id, svc.ds1, "item_x", boxes(1), execution_id="exe_x"),
        add_task_item(svc.project_id, task_id, svc.ds2, "item_y", boxes(1), execution_id="exe_y"),
        add_task_item(svc.project_id, "task_nope", svc.ds1, "item_z", [], execution_id="exe_z"),
    ]
    for command in commands:
        await svc.send(command)

    reasons: list[str] = []
    connection = await aio_pika.connect_robust(svc.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{svc.queue('on_add_task_item')}.dlq", passive=True)

        async def three_reasons() -> bool:
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                reasons.append(str(message.headers[DEAD_LETTER_REASON_HEADER]))
            return len(reasons) == 3

        await wait_until(three_reasons, message="the three commands dead-lettered")
    finally:
        await connection.close()
    assert sorted(reasons) == sorted(
        [
            f"task {task_id!r} not found in project {other_project!r}",
            f"task {task_id!r} is on dataset {svc.ds1!r}, not {svc.ds2!r}",
            f"task 'task_nope' not found in project {svc.project_id!r}",
        ]
    )
    assert await svc.count("SELECT count(*) FROM annotations") == 0
    assert await svc.count("SELECT count(*) FROM task_items") == 0


async def test_auto_accepted_item_is_recorded_and_announced_as_added_and_reviewed(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _task(svc)
    command = add_task_item(
        svc.project_id, task_id, svc.ds1, "item_c", boxes(2), execution_id="exe_c", auto_accept=True
    )
    await svc.send(command)
    await svc.events.wait_for(1, routing_key="task_item.added.v1")
    await svc.events.wait_for(1, routing_key="task_item.reviewed.v1")

    async def relayed() -> bool:
        # Delivered is not yet relayed: the relay deletes its rows once the broker has
        # confirmed them, and a redelivery meeting those rows adds nothing (they are
        # being published anyway).
        return await svc.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0

    await wait_until(relayed, message="the first events' outbox rows deleted")
    # A redelivery after both were published publishes them again, under the same ids.
    await svc.send(command)

    added = await svc.events.wait_for(2, routing_key="task_item.added.v1")
    reviewed = await svc.events.wait_for(2, routing_key="task_item.reviewed.v1")
    assert len({m.body["id"] for m in added}) == 1
    assert len({m.body["id"] for m in reviewed}) == 1
    data = added[0].body["data"]
    assert (data["status"], data["auto_accepted"], data["node_id"]) == ("approved", True, "task")
    review = reviewed[0].body["data"]
    assert review["status"] == "approved"
    assert review["reviewer"] == "pipeline:pipe_1"
    assert (review["auto_accepted"], review["accepted_unchanged"]) == (True, True)
    assert (review["execution_id"], review["service_id"]) == ("exe_c", "svc_a")
    assert review["model"] == {"name": "detector", "model_id": "mdl_1", "version": "1"}
    row = await svc.runtime.pool.fetchrow("SELECT * FROM task_items")
    assert row is not None
    assert (row["status"], row["auto_accepted"], row["reviewer"]) == (
        "approved",
        True,
        "pipeline:pipe_1",
    )
    acceptance = await svc.http.get(f"/tasks/{task_id}/acceptance", headers=svc.auth())
    assert [
        (a["approved"], a["auto_accepted"], a["auto_accepted_share"], a["acceptance_rate"])
        for a in acceptance.json()
    ] == [(1, 1, 1.0, 1.0)]
    project = await svc.http.get("/acceptance", headers=svc.auth())
    assert project.json()[0]["auto_accepted_share"] == 1.0


async def test_reviews_carry_the_execution_model_and_whether_accepted_unchanged(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task_id = await _task(svc, auto_add=True)
    ok = _handled("on_prediction_completed", "ok")
    for item in ("item_1", "item_2", "item_3"):
        await svc.publish(
            prediction(svc.project_id, svc.ds1, item, boxes(2), execution_id=f"exe_{item}")
        )
    await _settled("on_prediction_completed", "ok", ok, 3)
    listed = await svc.http.get("/annotations", params={"item_id": "item_2"}, headers=svc.auth())
    first_box = listed.json()[0]["id"]

    review_url = f"/tasks/{task_id}/items/{{}}/review"
    approve = {"action": "approve", "reviewer": "ann"}
    assert (
        await svc.http.post(review_url.format("item_1"), json=approve, headers=svc.auth())
    ).is_success
    corrected = await svc.http.post(
        review_url.format("item_2"),
        json={
            "action": "correct",
            "reviewer": "ann",
            "corrections": [{"op": "update", "annotation_id": first_box, "label": "dog"}],
        },
        headers=svc.auth(),
    )
    assert corrected.status_code == 200, corrected.text
    discard = {"action": "discard", "reviewer": "ann"}
    assert (
        await svc.http.post(review_url.format("item_3"), json=discard, headers=svc.auth())
    ).is_success

    reviewed = await svc.events.wait_for(3, routing_key="task_item.reviewed.v1")
    by_item = {m.body["data"]["item_id"]: m.body["data"] for m in reviewed}
    assert {
        item: (d["status"], d["accepted_unchanged"], d["auto_accepted"])
        for item, d in by_item.items()
    } == {
        "item_1": ("approved", True, False),
        "item_2": ("corrected", False, False),
        "item_3": ("discarded", False, False),
    }
    for item, d in by_item.items():
        assert (d["execution_id"], d["service_id"]) == (f"exe_{item}", "svc_a")
        assert d["model"] == {"name": "detector", "model_id": "mdl_1", "version": "1"}
