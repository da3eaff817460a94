"""Browser-style predict: items picked by id or DQL filter, read from the real dataset
service with the caller's key, run now as one batch of executions."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from common.contracts import ItemSnapshot
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
    assert no_service[0] == 400
    assert await router.executions() == []
