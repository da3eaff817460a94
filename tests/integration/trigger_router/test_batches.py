"""Browser-style predict: items picked by id or DQL filter, read from the real dataset
service with the caller's key, run now as one batch of executions."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
from PIL import Image

from common.contracts import ItemSnapshot, ServiceDeployed
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING
from tests.integration.trigger_router.conftest import Router
from tests.integration.trigger_router.test_executions import completed


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (seed, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _dataset(router: Router, key: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """A dataset in the dataset service with three images: one in /a, two in /b."""
    async with httpx.AsyncClient(base_url=router.auth_service.url) as http:
        created = await http.post("/datasets", json={"name": "pics"}, headers=router.auth(key))
        assert created.status_code == 201, created.text
        dataset = created.json()["id"]
        items = []
        for n, directory in enumerate(["/a", "/b", "/b"]):
            response = await http.post(
                f"/datasets/{dataset}/items",
                files={"file": (f"{n}.png", _png(n), "image/png")},
                data={"dir": directory},
                headers=router.auth(key),
            )
            assert response.status_code == 201, response.text
            items.append(response.json())
    return dataset, items


async def test_predict_on_picked_items_runs_one_batch(router: Router) -> None:
    service = await router.deploy()
    _, items = await _dataset(router)
    first, second = items[0]["id"], items[1]["id"]

    response = await router.http.post(
        f"/services/{service}/predict",
        json={"item_ids": [first, second, first]},
        headers=router.auth(),
    )

    assert response.status_code == 201, response.text
    batch = response.json()
    assert batch["item_count"] == 2
    assert batch["counts"]["queued"] == 2
    assert batch["progress"] == 0.0
    assert batch["selection"] == {"item_ids": [first, second]}
    requests = await router.predicts(service, 2)
    snapshots = [ItemSnapshot.model_validate(r.body["data"]["item"]) for r in requests]
    assert {s.id for s in snapshots} == {first, second}
    assert all(s.metadata["system"]["blob_key"] for s in snapshots)
    assert all(r.body["data"]["trigger_id"] is None for r in requests)
    executions = await router.executions()
    assert {e["batch_id"] for e in executions} == {batch["id"]}

    await router.publish(MODEL_SERVING, completed(executions[0]))

    async def half_done() -> dict[str, Any] | None:
        got = await router.http.get(f"/batches/{batch['id']}", headers=router.auth())
        body: dict[str, Any] = got.json()
        return body if body["progress"] == 0.5 else None

    assert await wait_until(half_done, timeout=10, message="half done")
    cancelled = await router.http.post(f"/batches/{batch['id']}/cancel", headers=router.auth())
    assert cancelled.json()["counts"]["cancelled"] == 1
    assert cancelled.json()["counts"]["success"] == 1
    assert cancelled.json()["progress"] == 1.0
    listed = await router.http.get("/batches", headers=router.auth())
    assert [b["id"] for b in listed.json()] == [batch["id"]]


async def test_predict_on_a_dql_filter(router: Router) -> None:
    service = await router.deploy()
    dataset, items = await _dataset(router)

    response = await router.http.post(
        f"/services/{service}/predict",
        json={"dataset_id": dataset, "filter": {"dir": "/b"}},
        headers=router.auth(),
    )

    assert response.status_code == 201, response.text
    assert response.json()["item_count"] == 2
    requests = await router.predicts(service, 2)
    assert {r.body["data"]["item"]["id"] for r in requests} == {i["id"] for i in items[1:]}


async def test_bad_requests_are_refused_with_a_reason(router: Router) -> None:
    service = await router.deploy()
    dataset, items = await _dataset(router)
    other_project, other_key = await router.auth_service.new_project()
    foreign_dataset, foreign_items = await _dataset(router, other_key)
    del other_project

    async def predict(body: dict[str, Any], on: str = service) -> tuple[int, Any]:
        response = await router.http.post(
            f"/services/{on}/predict", json=body, headers=router.auth()
        )
        return response.status_code, response.json()

    unknown = await predict({"item_ids": [items[0]["id"], "itm_nope"]})
    foreign = await predict({"item_ids": [foreign_items[0]["id"]]})
    foreign_ds = await predict({"dataset_id": foreign_dataset})
    both = await predict({"item_ids": [items[0]["id"]], "dataset_id": dataset})
    neither = await predict({})
    bad_filter = await predict({"dataset_id": dataset, "filter": {"dir": {"$gt": [1]}}})
    no_service = await predict({"item_ids": [items[0]["id"]]}, on="svc_nope")

    assert unknown == (404, {"detail": "1 item(s) not found: itm_nope"})
    assert foreign[0] == 404
    assert foreign_ds == (404, {"detail": f"dataset {foreign_dataset} not found"})
    assert both[0] == 422
    assert neither[0] == 422
    assert bad_filter[0] == 400
    assert bad_filter[1]["detail"].startswith("invalid filter at /dir/$gt")
    assert no_service == (404, {"detail": "model service svc_nope does not exist in this project"})
    assert await router.executions() == []


async def test_items_already_predicted_are_skipped_unless_forced(router: Router) -> None:
    service = await router.deploy()
    dataset, items = await _dataset(router)
    body: dict[str, Any] = {"dataset_id": dataset, "filter": {"dir": "/b"}}

    first = await router.http.post(f"/services/{service}/predict", json=body, headers=router.auth())
    assert first.status_code == 201, first.text
    assert first.json()["counts"]["skipped"] == 0
    assert first.json()["force"] is False
    await router.predicts(service, 2)
    executions = await router.executions()
    for execution in executions:
        await router.publish(MODEL_SERVING, completed(execution))

    async def all_success() -> bool:
        return all(e["status"] == "success" for e in await router.executions())

    assert await wait_until(all_success, timeout=10, message="first batch succeeded")

    # Another service of the same model version counts as "this model version" too.
    twin = await router.deploy()
    again = await router.http.post(f"/services/{twin}/predict", json=body, headers=router.auth())
    assert again.status_code == 201, again.text
    skipped = again.json()
    assert skipped["item_count"] == 2
    assert skipped["counts"]["skipped"] == 2
    assert skipped["counts"]["queued"] == 0
    assert skipped["finished"] == 2
    assert skipped["progress"] == 1.0
    assert len(await router.executions()) == 2

    # Only the items already predicted are skipped; the others run.
    mixed = await router.http.post(
        f"/services/{service}/predict",
        json={"item_ids": [items[0]["id"], items[1]["id"]]},
        headers=router.auth(),
    )
    assert mixed.json()["counts"]["skipped"] == 1
    assert mixed.json()["counts"]["queued"] == 1

    forced = await router.http.post(
        f"/services/{service}/predict", json={**body, "force": True}, headers=router.auth()
    )
    assert forced.status_code == 201, forced.text
    batch = forced.json()
    assert batch["force"] is True
    assert batch["counts"]["skipped"] == 0
    assert batch["counts"]["queued"] == 2
    requests = await router.predicts(service, 3)
    assert {r.body["data"]["item"]["id"] for r in requests} == {i["id"] for i in items}
    fresh = [e for e in await router.executions() if e["batch_id"] == batch["id"]]
    assert {e["item_id"] for e in fresh} == {i["id"] for i in items[1:]}
    assert not {e["id"] for e in fresh} & {e["id"] for e in executions}


async def test_another_model_version_is_not_skipped(router: Router) -> None:
    service = await router.deploy()
    _, items = await _dataset(router)
    ids = [items[0]["id"]]
    await router.http.post(
        f"/services/{service}/predict", json={"item_ids": ids}, headers=router.auth()
    )
    await router.predicts(service, 1)
    (execution,) = await router.executions()
    await router.publish(MODEL_SERVING, completed(execution))

    async def done() -> bool:
        return (await router.executions())[0]["status"] == "success"

    assert await wait_until(done, timeout=10, message="predicted")
    other = f"svc_{uuid.uuid4().hex[:12]}"
    await router.declare_predict_queue(other)
    await router.publish(
        MODEL_SERVING,
        ServiceDeployed(
            service_id=other, project_id=router.project_id, model_id="mdl_other", status="ready"
        ),
    )
    await router.wait_service(other, router.project_id)
    response = await router.http.post(
        f"/services/{other}/predict", json={"item_ids": ids}, headers=router.auth()
    )
    assert response.json()["counts"]["skipped"] == 0
    assert response.json()["counts"]["queued"] == 1
