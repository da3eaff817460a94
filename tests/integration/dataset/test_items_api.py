"""Dataset HTTP API against the real PostgreSQL, S3 and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from common.s3 import blob_key, object_exists
from common.testing.waits import wait_until
from dataset_service.app import create_app
from tests.integration.dataset.conftest import DatasetService, jpeg_bytes, png_bytes


async def _bucket_keys(client: Any, bucket: str) -> list[str]:
    listing = await client.list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


async def test_upload_stores_blob_and_metadata_and_emits_one_created_event(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(12, 7)

    response = await svc.upload(
        ds, data, "cat.png", directory="batch1/", metadata='{"camera": "x"}'
    )

    assert response.status_code == 201, response.text
    item = response.json()
    system = item["metadata"]["system"]
    assert (item["name"], item["dir"], item["filename"]) == (
        "cat.png",
        "/batch1",
        "/batch1/cat.png",
    )
    assert (system["mimetype"], system["width"], system["height"], system["size"]) == (
        "image/png",
        12,
        7,
        len(data),
    )
    assert item["metadata"]["user"] == {"camera": "x"}
    assert await object_exists(bucket_client, svc.settings.s3_bucket, blob_key(system["sha256"]))
    streamed = await svc.http.get(f"/items/{item['id']}/stream", headers=svc.auth())
    assert streamed.content == data
    assert streamed.headers["content-type"] == "image/png"

    created = await svc.events.wait_for(1, routing_key="item.created.v1")
    assert created[0].body["type"] == "prelabel.item.created.v1"
    assert created[0].body["data"]["item"]["id"] == item["id"]
    assert created[0].body["data"]["item"]["metadata"]["system"]["mimetype"] == "image/png"


async def test_each_change_emits_its_own_event_kind(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = (await svc.upload(ds, png_bytes(), "a.png")).json()
    url = f"/items/{item['id']}"

    meta = await svc.http.patch(url, json={"metadata": {"user": {"score": 3}}}, headers=svc.auth())
    renamed = await svc.http.patch(url, json={"name": "b.png", "hidden": True}, headers=svc.auth())
    unchanged = await svc.http.patch(url, json={"name": "b.png"}, headers=svc.auth())
    deleted = await svc.http.delete(url, headers=svc.auth())

    assert meta.status_code == 200
    assert meta.json()["metadata"]["user"] == {"score": 3}
    assert renamed.json()["filename"] == "/b.png"
    assert renamed.json()["hidden"] is True
    assert unchanged.status_code == 200
    assert deleted.status_code == 204
    events = await svc.events.wait_for(4)
    await_keys = [e.routing_key for e in events]
    assert await_keys == [
        "item.created.v1",
        "item.metadata_updated.v1",
        "item.updated.v1",
        "item.deleted.v1",
    ]
    assert events[1].body["data"]["previous_user_metadata"] == {}
    assert sorted(events[2].body["data"]["changed"]) == ["hidden", "name"]
    assert (await svc.http.get(url, headers=svc.auth())).status_code == 404


async def test_deleting_the_last_item_of_a_content_removes_its_blob(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(5, 5)
    first = (await svc.upload(ds, data, "one.png")).json()
    second = (await svc.upload(ds, data, "two.png")).json()
    key = first["metadata"]["system"]["blob_key"]

    await svc.http.delete(f"/items/{first['id']}", headers=svc.auth())
    still_there = await object_exists(bucket_client, svc.settings.s3_bucket, key)
    await svc.http.delete(f"/items/{second['id']}", headers=svc.auth())

    assert still_there
    assert not await object_exists(bucket_client, svc.settings.s3_bucket, key)


async def test_bad_uploads_get_clear_errors_and_leave_nothing_behind(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    zip_bytes = b"PK\x03\x04" + b"\x00" * 60
    cases = {
        "oversized": (await svc.upload(ds, b"\x89PNG" + b"0" * 300_000, "big.png"), 413),
        "empty": (await svc.upload(ds, b"", "empty.png"), 400),
        "unsupported": (await svc.upload(ds, zip_bytes, "archive.png"), 415),
        "binary junk": (await svc.upload(ds, bytes(range(256)) * 4, "junk.bin"), 415),
        "metadata list": (await svc.upload(ds, png_bytes(), "m.png", metadata="[1, 2]"), 400),
        "metadata not json": (await svc.upload(ds, png_bytes(), "n.png", metadata="{oops"), 400),
        "broken image": (await svc.upload(ds, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "x.png"), 400),
        "no file field": (
            await svc.http.post(
                f"/datasets/{ds}/items",
                data={"dir": "/a"},
                files={"other": ("a.png", png_bytes())},
                headers=svc.auth(),
            ),
            400,
        ),
        "dir sent as a file": (
            await svc.http.post(
                f"/datasets/{ds}/items",
                files={"file": ("a.png", png_bytes()), "dir": ("d", b"/a")},
                headers=svc.auth(),
            ),
            400,
        ),
    }

    for label, (response, status) in cases.items():
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        assert response.json()["detail"], label
    assert "image/png" in cases["unsupported"][0].json()["detail"]
    assert "limit" in cases["oversized"][0].json()["detail"]
    assert "'file'" in cases["no file field"][0].json()["detail"]
    assert "'dir'" in cases["dir sent as a file"][0].json()["detail"]
    listed = await svc.http.get(f"/datasets/{ds}/items", headers=svc.auth())
    assert listed.json()["total_count"] == 0
    assert await _bucket_keys(bucket_client, svc.settings.s3_bucket) == []


async def test_names_with_traversal_or_control_characters_are_sanitised(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()

    traversal = await svc.upload(ds, png_bytes(), "../../etc/passwd.png", directory="/a/../b")
    control = await svc.upload(ds, png_bytes(3, 3), "x.png", form_name="be\x07ll\x00.png")

    item = traversal.json()
    assert (item["name"], item["dir"], item["filename"]) == (
        "passwd.png",
        "/a/b",
        "/a/b/passwd.png",
    )
    assert control.json()["name"] == "bell.png"


async def test_content_type_comes_from_the_bytes_not_the_name(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()

    jpeg = (await svc.upload(ds, jpeg_bytes(), "really-a-jpeg.png")).json()
    text = (await svc.upload(ds, b"hello world\n", "note.png")).json()
    prompt = (await svc.upload(ds, json.dumps({"prompt": "hi"}).encode(), "p.txt")).json()

    assert jpeg["metadata"]["system"]["mimetype"] == "image/jpeg"
    assert text["metadata"]["system"]["mimetype"] == "text/plain"
    assert prompt["metadata"]["system"]["mimetype"] == "application/json"


async def test_auth_is_required_and_projects_are_isolated(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = (await svc.upload(ds, png_bytes(), "a.png")).json()
    _, other_key = await svc.new_project("other")

    missing = await svc.http.get("/datasets")
    wrong = await svc.http.get("/datasets", headers=svc.auth("pk_nope"))
    other_dataset = await svc.http.get(f"/datasets/{ds}", headers=svc.auth(other_key))
    other_item = await svc.http.get(f"/items/{item['id']}", headers=svc.auth(other_key))
    other_delete = await svc.http.delete(f"/items/{item['id']}", headers=svc.auth(other_key))
    other_upload = await svc.upload(ds, png_bytes(), "b.png", key=other_key)
    other_list = await svc.http.get("/datasets", headers=svc.auth(other_key))

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert [r.status_code for r in (other_dataset, other_item, other_delete, other_upload)] == [
        404
    ] * 4
    assert other_list.json() == []
    assert (await svc.http.get(f"/items/{item['id']}", headers=svc.auth())).status_code == 200


async def test_admin_routes_need_the_admin_key(dataset_service: DatasetService) -> None:
    response = await dataset_service.http.post(
        "/projects", json={"name": "x"}, headers=dataset_service.auth()
    )
    assert response.status_code == 401


async def test_dql_queries_filter_sort_and_page(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    for i in range(7):
        directory = "/batch1" if i % 2 == 0 else "/batch2/sub"
        await svc.upload(
            ds,
            png_bytes(4 + i, 4),
            f"img{i}.png",
            directory=directory,
            metadata=json.dumps({"score": i}),
        )
    await svc.upload(ds, b"some text", "notes.txt", directory="/batch1")

    async def query(body: dict[str, Any]) -> httpx.Response:
        return await svc.http.post(f"/datasets/{ds}/items/query", json=body, headers=svc.auth())

    images = await query({"filter": {"metadata.system.mimetype": "image/*", "dir": "/batch1/**"}})
    scored = await query(
        {
            "filter": {"metadata.user.score": {"$gte": 2}},
            "sort": [{"field": "metadata.user.score", "order": "desc"}],
            "page": 1,
            "page_size": 2,
        }
    )
    get_form = await svc.http.get(
        f"/datasets/{ds}/items",
        params={"filter": json.dumps({"dir": {"$in": ["/batch2/*"]}})},
        headers=svc.auth(),
    )

    assert sorted(i["name"] for i in images.json()["items"]) == [
        "img0.png",
        "img2.png",
        "img4.png",
        "img6.png",
    ]
    page = scored.json()
    assert [i["metadata"]["user"]["score"] for i in page["items"]] == [4, 3]
    assert (page["total_count"], page["has_next"]) == (5, True)
    assert get_form.json()["total_count"] == 3


async def test_invalid_queries_answer_400_with_what_and_where(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    url = f"/datasets/{ds}/items/query"

    unknown = await svc.http.post(
        url, json={"filter": {"$and": [{"dir": {"$regex": "x"}}]}}, headers=svc.auth()
    )
    wrong_type = await svc.http.post(
        url, json={"filter": {"name": {"$in": "a"}}}, headers=svc.auth()
    )
    deep: dict[str, Any] = {"dir": "/"}
    for _ in range(12):
        deep = {"$and": [deep]}
    too_deep = await svc.http.post(url, json={"filter": deep}, headers=svc.auth())
    too_big = await svc.http.post(url, json={"page_size": 5000}, headers=svc.auth())

    assert unknown.status_code == 400
    assert unknown.json()["detail"]["path"] == "/$and/0/dir/$regex"
    assert "$regex" in unknown.json()["detail"]["message"]
    assert wrong_type.status_code == 400
    assert "$in" in wrong_type.json()["detail"]["path"]
    assert too_deep.status_code == 400
    assert "deep" in too_deep.json()["detail"]["message"]
    assert too_big.status_code == 400


async def test_query_matches_array_elements_and_refuses_prediction_fields(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    await svc.upload(ds, png_bytes(), "a.png", metadata=json.dumps({"tags": ["cat", "dog"]}))
    await svc.upload(ds, png_bytes(5, 4), "b.png", metadata=json.dumps({"tags": "cat"}))
    await svc.upload(ds, png_bytes(6, 4), "c.png", metadata=json.dumps({"tags": ["bird"]}))
    url = f"/datasets/{ds}/items/query"

    async def names(filter_: dict[str, Any]) -> list[str]:
        response = await svc.http.post(url, json={"filter": filter_}, headers=svc.auth())
        assert response.status_code == 200, response.text
        return sorted(i["name"] for i in response.json()["items"])

    edge = await svc.http.post(
        url,
        json={"filter": {"prediction.annotations.confidence": {"$gte": 0.9}}},
        headers=svc.auth(),
    )

    assert await names({"metadata.user.tags": "cat"}) == ["a.png", "b.png"]
    assert await names({"metadata.user.tags": {"$nin": ["dog"]}}) == ["b.png", "c.png"]
    assert await names({"metadata.user.tags": "b*"}) == ["c.png"]
    assert edge.status_code == 400
    assert edge.json()["detail"]["path"] == "/prediction.annotations.confidence"
    assert "only valid in pipeline edge conditions" in edge.json()["detail"]["message"]


async def test_event_committed_before_a_crash_is_published_after_restart(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    await svc.runtime.relay.stop()  # the process "dies" after commit, before publishing

    item = (await svc.upload(ds, png_bytes(), "late.png")).json()
    assert svc.events.of("item.created.v1") == []

    async def outbox_empty() -> bool:
        return await svc.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0

    restarted = create_app(svc.settings)
    async with restarted.router.lifespan_context(restarted):
        created = await svc.events.wait_for(1, routing_key="item.created.v1")
        await wait_until(outbox_empty, message="outbox drained")
    assert created[0].body["data"]["item"]["id"] == item["id"]
    assert len(svc.events.of("item.created.v1")) == 1


async def test_concurrent_uploads_each_get_their_own_answer(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    other = await svc.create_dataset("elsewhere")
    # Sent at once, so the service may insert them together: each still stands alone.
    uploads = [
        svc.upload(ds, png_bytes(4 + n, 4), f"img{n}.png", directory="/together") for n in range(6)
    ]
    uploads.append(svc.upload(ds, png_bytes(30, 30), "img0.png", directory="/together"))
    uploads.append(svc.upload("ds_missing", png_bytes(31, 31), "lost.png"))
    uploads.append(svc.upload(other, png_bytes(5, 4), "img0.png", directory="/together"))

    responses = await asyncio.gather(*uploads)

    statuses = [r.status_code for r in responses]
    assert sorted(statuses[:7]) == [201] * 6 + [409]
    assert statuses[7:] == [404, 201]
    listed = await svc.http.get(f"/datasets/{ds}/items", headers=svc.auth())
    assert listed.json()["total_count"] == 6
    # One blob per content kept (the other dataset's item shares img1's); the blobs of
    # the refused uploads are gone.
    keys = await _bucket_keys(bucket_client, svc.settings.s3_bucket)
    assert len(keys) == 6
