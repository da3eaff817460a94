"""Predictions become annotations exactly once, on the real broker and database."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
from prometheus_client import REGISTRY

from annotation_service.deps import Deps as AnnotationDeps
from annotation_service.domain import NewAnnotation, annotations_from_prediction
from annotation_service.repository import Repository
from annotation_service.usecases.ingest import store_predictions
from common.envelope import CloudEvent
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import DEAD_LETTER_REASON_HEADER
from tests.integration.annotation.conftest import AnnotationService, boxes, prediction


def _handled(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "prelabel_annotation_messages_handled_total",
        {"handler": "on_prediction_completed", "outcome": outcome},
    )
    return value or 0.0


async def test_same_prediction_published_twice_is_stored_once(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    event = prediction(svc.project_id, svc.ds1, "item_1", boxes(10))
    duplicates_before = _handled("duplicate")

    await svc.publish(event)
    await svc.publish(event)

    async def second_was_a_duplicate() -> bool:
        return _handled("duplicate") > duplicates_before

    await wait_until(second_was_a_duplicate, message="second delivery handled as a duplicate")
    assert await svc.count("SELECT count(*) FROM annotations") == 10
    assert (
        await svc.count(
            "SELECT count(DISTINCT (execution_id, idx)) FROM annotations WHERE execution_id = $1",
            event.data.execution_id,
        )
        == 10
    )
    created = await svc.events.wait_for(1, routing_key="annotation.created.v2")
    listed = await svc.http.get("/annotations", params={"item_id": "item_1"}, headers=svc.auth())
    assert listed.status_code == 200
    assert len(created) == 1, "the redelivery announced nothing"
    announced = [a["annotation_id"] for a in created[0].body["data"]["annotations"]]
    assert len(announced) == 10
    assert {a["id"] for a in listed.json()} == set(announced)
    first = listed.json()[0]
    assert first["source"] == "model"
    assert first["model"] == {"name": "detector", "model_id": "mdl_1", "version": "1"}
    assert first["execution_id"] == event.data.execution_id
    assert first["original"]["label"] == "cat"


async def test_failed_attempt_is_rolled_back_and_redelivered_once_stored(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    task = await svc.http.post(
        "/tasks",
        json={"name": "review", "dataset_id": svc.ds1, "auto_add": True},
        headers=svc.auth(),
    )
    assert task.status_code == 201, task.text
    # The first attempt fails after its annotations were inserted (when the item enters
    # the task), inside the same transaction: nothing may stay, and the nack redelivers.
    await svc.runtime.pool.execute(
        """CREATE SEQUENCE attempts;
           CREATE FUNCTION fail_first() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF nextval('attempts') = 1 THEN RAISE EXCEPTION 'injected failure'; END IF;
               RETURN NULL;
           END $$;
           CREATE TRIGGER fail_first AFTER INSERT ON task_items
               FOR EACH STATEMENT EXECUTE FUNCTION fail_first();"""
    )
    event = prediction(svc.project_id, svc.ds1, "item_9", boxes(10))

    await svc.publish(event)

    async def stored() -> bool:
        return await svc.count("SELECT count(*) FROM annotations") > 0

    await wait_until(stored, message="annotations stored after redelivery")
    assert await svc.count("SELECT last_value FROM attempts") == 2
    assert await svc.count("SELECT count(*) FROM annotations") == 10
    assert await svc.count("SELECT count(*) FROM task_items") == 1
    created = await svc.events.wait_for(1, routing_key="annotation.created.v2")
    await svc.events.wait_for(1, routing_key="task_item.added.v1")
    assert len(created[0].body["data"]["annotations"]) == 10


async def test_poison_predictions_go_to_the_dead_letter_queue_with_a_reason(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    bad_geometry = prediction(svc.project_id, svc.ds1, "item_2", [])
    body = json.loads(bad_geometry.to_json_bytes())
    body["data"]["annotations"] = [
        {"type": "box", "label": "cat", "coordinates": [1, 2, 3], "confidence": 0.9}
    ]
    exchange = svc.exchange("model_serving")
    await publish_raw(svc.amqp_url, exchange, "prediction.completed.v1", b"{not json")
    await publish_raw(svc.amqp_url, exchange, "prediction.completed.v1", json.dumps(body).encode())

    dlq = f"{svc.runtime.consumer_queues[0]}.dlq"
    reasons: list[str] = []
    connection = await aio_pika.connect_robust(svc.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(dlq, passive=True)

        async def two_reasons() -> bool:
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                reasons.append(str(message.headers[DEAD_LETTER_REASON_HEADER]))
            return len(reasons) == 2

        await wait_until(two_reasons, message="both poison messages dead-lettered")
    finally:
        await connection.close()
    assert any("not JSON" in r for r in reasons)
    assert any("annotation 0" in r and "box" in r for r in reasons)
    assert await svc.count("SELECT count(*) FROM annotations") == 0


async def test_one_batch_with_duplicates_and_a_stored_prediction_stores_each_once(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    repo: Repository = svc.runtime.deps_as(AnnotationDeps).repo
    old = prediction(svc.project_id, svc.ds1, "item_old", boxes(2))
    new = prediction(svc.project_id, svc.ds1, "item_new", boxes(3))
    other = prediction(
        svc.project_id, svc.ds1, "item_other", [*boxes(1), *boxes(1, label="dog", offset=50)]
    )
    empty = prediction(svc.project_id, svc.ds1, "item_empty", [])

    def parsed(event: CloudEvent[Any]) -> tuple[CloudEvent[Any], list[NewAnnotation]]:
        return event, annotations_from_prediction(event.data)

    await store_predictions(repo, [parsed(old)])
    results = await store_predictions(repo, [parsed(e) for e in (old, new, new, other, empty)])

    assert [r.stored for r in results] == [0, 3, 0, 2, 0]
    rows = await svc.runtime.pool.fetch(
        "SELECT item_id, idx, label, coordinates FROM annotations ORDER BY item_id, idx"
    )
    assert [(r["item_id"], r["idx"]) for r in rows] == [
        ("item_new", 0),
        ("item_new", 1),
        ("item_new", 2),
        ("item_old", 0),
        ("item_old", 1),
        ("item_other", 0),
        ("item_other", 1),
    ]
    other_rows = [r for r in rows if r["item_id"] == "item_other"]
    assert [r["label"] for r in other_rows] == ["cat", "dog"]
    assert [r["coordinates"] for r in other_rows] == [
        a.coordinates for a in annotations_from_prediction(other.data)
    ]
    created = await svc.events.wait_for(3, routing_key="annotation.created.v2")
    announced = {m.body["data"]["item_id"]: m.body["data"]["annotations"] for m in created}
    assert sorted(announced) == ["item_new", "item_old", "item_other"]
    assert [a["label"] for a in announced["item_other"]] == ["cat", "dog"]
