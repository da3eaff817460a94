"""Labeling tasks: items flow in from predictions, through review, into acceptance rates."""

from __future__ import annotations

from typing import Any

from common.contracts import PredictedAnnotation
from common.testing.waits import wait_until
from tests.conftest import AuthService
from tests.integration.annotation.conftest import AnnotationService, boxes, prediction


async def _progress(svc: AnnotationService, task_id: str) -> dict[str, Any]:
    response = await svc.http.get(f"/tasks/{task_id}/progress", headers=svc.auth())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _review(
    svc: AnnotationService, task_id: str, item_id: str, action: str, **extra: Any
) -> dict[str, Any]:
    response = await svc.http.post(
        f"/tasks/{task_id}/items/{item_id}/review",
        json={"action": action, "reviewer": "ana", **extra},
        headers=svc.auth(),
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_items_flow_through_review_and_acceptance_is_per_model_version(
    annotation_service: AnnotationService, auth_service: AuthService
) -> None:
    svc = annotation_service
    created = await svc.http.post(
        "/tasks",
        json={"name": "cats", "dataset_id": svc.ds1, "auto_add_from_services": ["svc_a"]},
        headers=svc.auth(),
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    # v1 pre-labels items 1-5, v2 items 6-8; svc_b's item 9 and another dataset's
    # item 10 are not for this task.
    for n in range(1, 6):
        await svc.publish(prediction(svc.project_id, svc.ds1, f"it_{n}", boxes(2), version="1"))
    for n in range(6, 9):
        await svc.publish(prediction(svc.project_id, svc.ds1, f"it_{n}", boxes(1), version="2"))
    await svc.publish(prediction(svc.project_id, svc.ds1, "it_9", boxes(1), service_id="svc_b"))
    await svc.publish(prediction(svc.project_id, svc.ds2, "it_10", boxes(1)))

    async def all_stored() -> bool:
        return await svc.count("SELECT count(*) FROM annotations") == 15

    await wait_until(all_stored, message="every prediction stored")
    assert (await _progress(svc, task_id))["counts"]["pending-review"] == 8
    added = await svc.events.wait_for(8, routing_key="task_item.added.v1")
    assert {m.body["data"]["item_id"] for m in added} == {f"it_{n}" for n in range(1, 9)}

    pending = await svc.http.get(
        f"/tasks/{task_id}/items", params={"status": "pending-review"}, headers=svc.auth()
    )
    assert pending.json()["total"] == 8
    by_item = {i["item_id"]: i for i in pending.json()["items"]}
    assert len(by_item["it_3"]["annotations"]) == 2
    assert by_item["it_6"]["model"]["version"] == "2"
    ann_3 = by_item["it_3"]["annotations"][0]["id"]
    ann_5 = by_item["it_5"]["annotations"][0]["id"]
    ann_7 = by_item["it_7"]["annotations"][0]["id"]

    # v1: approve 1 and 2, correct 3 in the review, discard 4, and approve 5 after an
    # edit through the annotation API (which makes it corrected, not approved).
    assert (await _review(svc, task_id, "it_1", "approve"))["status"] == "approved"
    await _review(svc, task_id, "it_2", "approve")
    corrected = await _review(
        svc,
        task_id,
        "it_3",
        "correct",
        corrections=[
            {"op": "update", "annotation_id": ann_3, "label": "dog"},
            {"op": "create", "type": "point", "label": "nose", "coordinates": [3, 4]},
        ],
    )
    assert corrected["status"] == "corrected"
    await _review(svc, task_id, "it_4", "discard")
    edit = await svc.http.patch(
        f"/annotations/{ann_5}", json={"coordinates": [[0, 0], [4, 4]]}, headers=svc.auth()
    )
    assert edit.status_code == 200, edit.text
    assert (await _review(svc, task_id, "it_5", "approve"))["status"] == "corrected"
    # v2: approve 6, correct 7 by deleting its box, leave 8 pending.
    await _review(svc, task_id, "it_6", "approve")
    await _review(
        svc, task_id, "it_7", "correct", corrections=[{"op": "delete", "annotation_id": ann_7}]
    )

    again = await svc.http.post(
        f"/tasks/{task_id}/items/it_1/review",
        json={"action": "discard", "reviewer": "bo"},
        headers=svc.auth(),
    )
    assert again.status_code == 409
    progress = await _progress(svc, task_id)
    assert progress["counts"] == {
        "pending-review": 1,
        "approved": 3,
        "corrected": 3,
        "discarded": 1,
    }
    acceptance = await svc.http.get(f"/tasks/{task_id}/acceptance", headers=svc.auth())
    rates = {a["model"]["version"]: a for a in acceptance.json()}
    assert (rates["1"]["reviewed"], rates["1"]["approved"], rates["1"]["acceptance_rate"]) == (
        5,
        2,
        0.4,
    )
    assert (rates["2"]["reviewed"], rates["2"]["approved"], rates["2"]["acceptance_rate"]) == (
        2,
        1,
        0.5,
    )
    reviewed = await svc.events.wait_for(7, routing_key="task_item.reviewed.v1")
    assert {m.body["data"]["item_id"]: m.body["data"]["status"] for m in reviewed}["it_5"] == (
        "corrected"
    )

    item_3 = await svc.http.get("/annotations", params={"item_id": "it_3"}, headers=svc.auth())
    labels = sorted(
        (a["label"], a["source"], (a["original"] or {}).get("label")) for a in item_3.json()
    )
    assert labels == [("cat", "model", "cat"), ("dog", "model", "cat"), ("nose", "human", None)]
    deleted = await svc.http.get(
        "/annotations",
        params={"item_id": "it_7", "include_deleted": "true"},
        headers=svc.auth(),
    )
    assert [(a["deleted"], a["deleted_by"]) for a in deleted.json()] == [(True, "ana")]

    _, other_key = await auth_service.new_project()
    hidden = await svc.http.get(f"/tasks/{task_id}/progress", headers=svc.auth(other_key))
    assert hidden.status_code == 404
    no_key = await svc.http.get(f"/tasks/{task_id}/progress")
    assert no_key.status_code == 401


async def test_items_added_by_hand_are_credited_to_their_model_version(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    await svc.publish(prediction(svc.project_id, svc.ds1, "it_1", boxes(1), version="7"))

    async def stored() -> bool:
        return await svc.count("SELECT count(*) FROM annotations") == 1

    await wait_until(stored, message="prediction stored")
    task = (
        await svc.http.post(
            "/tasks", json={"name": "manual", "dataset_id": svc.ds1}, headers=svc.auth()
        )
    ).json()
    added = await svc.http.post(
        f"/tasks/{task['id']}/items", json={"item_ids": ["it_1"]}, headers=svc.auth()
    )
    unknown = await svc.http.post(
        f"/tasks/{task['id']}/items", json={"item_ids": ["nope"]}, headers=svc.auth()
    )
    assert added.json() == {"added": ["it_1"]}
    assert unknown.status_code == 404
    await _review(svc, task["id"], "it_1", "approve")
    acceptance = (await svc.http.get("/acceptance", headers=svc.auth())).json()
    assert [(a["model"]["version"], a["acceptance_rate"]) for a in acceptance] == [("7", 1.0)]


async def test_human_annotations_are_validated_and_keep_the_model_original(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    await svc.publish(
        prediction(
            svc.project_id,
            svc.ds1,
            "it_1",
            [PredictedAnnotation(type="classification", label="cat", confidence=0.7)],
        )
    )

    async def stored() -> list[dict[str, Any]]:
        listed = await svc.http.get("/annotations", params={"item_id": "it_1"}, headers=svc.auth())
        result: list[dict[str, Any]] = listed.json()
        return result

    (model_ann,) = await wait_until(stored, message="prediction stored")
    bad = await svc.http.post(
        "/annotations",
        json={"item_id": "it_1", "type": "polygon", "label": "x", "coordinates": [[0, 0]]},
        headers=svc.auth(),
    )
    good = await svc.http.post(
        "/annotations",
        json={"item_id": "it_1", "type": "box", "label": "cat", "coordinates": [[5, 5], [1, 1]]},
        headers=svc.auth(),
    )
    relabel = await svc.http.patch(
        f"/annotations/{model_ann['id']}", json={"label": "dog"}, headers=svc.auth()
    )

    assert bad.status_code == 422
    assert "polygon" in bad.json()["detail"]
    assert good.status_code == 201
    assert good.json()["coordinates"] == [[1, 1], [5, 5]]
    assert good.json()["source"] == "human"
    assert relabel.json()["label"] == "dog"
    assert relabel.json()["original"]["label"] == "cat"
    assert relabel.json()["modified"] is True
    created = await svc.events.wait_for(2, routing_key="annotation.created.v2")
    assert sorted(m.body["data"]["source"] for m in created) == ["human", "model"]


async def test_a_task_or_export_on_another_projects_dataset_is_not_found(
    annotation_service: AnnotationService, auth_service: AuthService
) -> None:
    svc = annotation_service
    _, other_key = await auth_service.new_project()
    for key in (other_key,):
        task = await svc.http.post(
            "/tasks", json={"name": "theirs", "dataset_id": svc.ds1}, headers=svc.auth(key)
        )
        assert task.status_code == 404, task.text
        assert svc.ds1 in task.json()["detail"]
        export = await svc.http.get(f"/datasets/{svc.ds1}/export", headers=svc.auth(key))
        assert export.status_code == 404, export.text
    unknown = await svc.http.post(
        "/tasks", json={"name": "nowhere", "dataset_id": "ds_nope"}, headers=svc.auth()
    )
    assert unknown.status_code == 404, unknown.text
    assert await svc.count("SELECT count(*) FROM tasks") == 0
