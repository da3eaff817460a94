"""Hostile uploads over the HTTP API on the real PostgreSQL and S3: bodies over the limit
refused while they stream, metadata over its limits, names too long, Idempotency-Keys
reused on another dataset or with other data, and deletes racing uploads of the same
content."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from common.s3 import object_exists
from dataset_service.deps import Deps as DatasetDeps
from dataset_service.usecases.items import ItemStore
from tests.integration.dataset.conftest import DatasetService, png_bytes

CHUNK = 64 * 1024


async def test_a_body_over_the_limit_is_refused_while_it_streams(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    boundary = "xyz"
    sent = 0
    chunks = 200  # 12.8 MB, against a limit of 200 kB

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        for _ in range(chunks):
            sent += 1
            yield b"\x89PNG" + b"0" * (CHUNK - 4)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await svc.http.post(
        f"/datasets/{ds}/items",
        content=body(),
        headers={**svc.auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 413, response.text
    assert "limit" in response.json()["detail"]
    # Refused once the limit (plus room for the form's text fields) had arrived.
    limit = svc.settings.max_upload_bytes
    assert sent * CHUNK < limit + 2 * 1024 * 1024, sent
    assert sent < chunks


async def test_a_body_whose_length_is_over_the_limit_is_refused_before_it_is_read(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    response = await svc.http.post(
        f"/datasets/{ds}/items",
        content=b"x" * 3_000_000,
        headers={**svc.auth(), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413, response.text
    assert "3000000 bytes" in response.json()["detail"]


async def test_metadata_and_names_over_their_limits_are_refused_with_the_limit(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    cases = {
        "100 kB metadata": await svc.upload(
            ds, png_bytes(), "m.png", metadata=json.dumps({"x": "y" * 100_000})
        ),
        "40 deep metadata": await svc.upload(
            ds, png_bytes(), "d.png", metadata='{"a":' * 40 + "1" + "}" * 40
        ),
        "2000 deep metadata": await svc.upload(
            ds, png_bytes(), "e.png", metadata='{"a":' * 2000 + "1" + "}" * 2000
        ),
        "10000 character name": await svc.upload(ds, png_bytes(), "n" * 10_000),
        "10000 character form name": await svc.upload(
            ds, png_bytes(), "ok.png", form_name="n" * 10_000 + ".png"
        ),
    }
    for label, response in cases.items():
        assert response.status_code == 400, f"{label}: {response.status_code} {response.text}"
    assert "65536 bytes" in cases["100 kB metadata"].json()["detail"]
    assert "deeper than 32 levels" in cases["40 deep metadata"].json()["detail"]
    assert "deeper than 32 levels" in cases["2000 deep metadata"].json()["detail"]
    # python-multipart refuses a part header over 4 KiB before the name is seen.
    assert "at most 255 characters" in cases["10000 character name"].json()["detail"]
    assert "the limit is 255" in cases["10000 character form name"].json()["detail"]

    item = (await svc.upload(ds, png_bytes(), "fine.png")).json()
    url = f"/items/{item['id']}"
    deep = {"user": json.loads('{"a":' * 40 + "1" + "}" * 40)}
    patched = {
        "deep": await svc.http.patch(url, json={"metadata": deep}, headers=svc.auth()),
        "large": await svc.http.patch(
            url, json={"metadata": {"user": {"x": "y" * 100_000}}}, headers=svc.auth()
        ),
        "long name": await svc.http.patch(url, json={"name": "n" * 300}, headers=svc.auth()),
    }
    for label, response in patched.items():
        assert response.status_code == 400, f"{label}: {response.status_code} {response.text}"
    current = (await svc.http.get(url, headers=svc.auth())).json()
    assert (current["name"], current["metadata"]["user"]) == ("fine.png", {})


async def test_the_openapi_document_states_the_metadata_and_name_limits(
    dataset_service: DatasetService,
) -> None:
    document = (await dataset_service.http.get("/openapi.json")).json()
    upload = document["paths"]["/datasets/{dataset_id}/items"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "32 levels deep and 65536 bytes" in form["metadata"]["description"]
    assert "255 characters" in form["name"]["description"]
    patch = document["components"]["schemas"]["ItemPatch"]["properties"]
    assert "65536 bytes" in patch["metadata"]["description"]


async def test_an_idempotency_key_is_scoped_to_its_dataset(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    first_ds = await svc.create_dataset("first")
    second_ds = await svc.create_dataset("second")
    headers = {**svc.auth(), "Idempotency-Key": "retry-1"}

    async def upload(ds: str, data: bytes, name: str = "a.png") -> Any:
        return await svc.http.post(
            f"/datasets/{ds}/items",
            files={"file": (name, data, "application/octet-stream")},
            data={"dir": "/"},
            headers=headers,
        )

    first = await upload(first_ds, png_bytes())
    retried = await upload(first_ds, png_bytes())
    elsewhere = await upload(second_ds, png_bytes())
    changed = await upload(first_ds, png_bytes(color=(1, 2, 3)))
    renamed = await upload(first_ds, png_bytes(), "b.png")

    assert first.status_code == 201, first.text
    assert retried.json()["id"] == first.json()["id"]
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["dataset_id"] == second_ds
    assert elsewhere.json()["id"] != first.json()["id"]
    for response in (changed, renamed):
        assert response.status_code == 409, response.text
        assert "'retry-1' was already used with different data" in response.json()["detail"]
    counts = await svc.runtime.pool.fetch(
        "SELECT dataset_id, count(*) AS n FROM items GROUP BY dataset_id"
    )
    assert {r["dataset_id"]: r["n"] for r in counts} == {first_ds: 1, second_ds: 1}


async def test_deleting_an_item_keeps_the_blob_an_upload_in_flight_is_about_to_name(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    store: ItemStore = svc.runtime.deps_as(DatasetDeps).store
    ds = await svc.create_dataset()
    data = png_bytes(7, 7)
    old = (await svc.upload(ds, data, "old.png")).json()
    key = old["metadata"]["system"]["blob_key"]

    # Another project's upload of the same content has written (or found) the blob and
    # is about to insert its row when the old item is deleted.
    other_project, _ = await svc.new_project("other")
    other_ds = await svc.runtime.pool.fetchval(
        "INSERT INTO datasets (id, project_id, name) VALUES ('ds_race', $1, 'race') RETURNING id",
        other_project,
    )
    stored = await store._stored(
        project_id=other_project,
        dataset_id=other_ds,
        data=data,
        name="new.png",
        directory="/",
        user_metadata={},
        origin_id="http:race",
    )
    deleted = await svc.http.delete(f"/items/{old['id']}", headers=svc.auth())
    assert deleted.status_code == 204
    ((item, created),) = await store._insert_all([stored])  # type: ignore[misc]

    assert created
    assert await object_exists(bucket_client, svc.settings.s3_bucket, key)
    # The lease is gone with the insert: deleting the last item removes the blob.
    await store.delete_blob_if_unused(item)
    await svc.runtime.pool.execute("DELETE FROM items WHERE id = $1", item.id)
    await store.delete_blob_if_unused(item)
    assert not await object_exists(bucket_client, svc.settings.s3_bucket, key)


async def test_concurrent_uploads_and_deletes_of_one_content_never_lose_a_named_blob(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(5, 3, color=(9, 9, 9))

    for round_ in range(15):
        first = (await svc.upload(ds, data, f"a{round_}.png")).json()
        key = first["metadata"]["system"]["blob_key"]
        deleted, uploaded = await asyncio.gather(
            svc.http.delete(f"/items/{first['id']}", headers=svc.auth()),
            svc.upload(ds, data, f"b{round_}.png"),
        )
        assert deleted.status_code == 204
        assert uploaded.status_code == 201, uploaded.text
        assert await object_exists(bucket_client, svc.settings.s3_bucket, key), round_
        streamed = await svc.http.get(f"/items/{uploaded.json()['id']}/stream", headers=svc.auth())
        assert streamed.content == data
        await svc.http.delete(f"/items/{uploaded.json()['id']}", headers=svc.auth())
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM blob_leases") == 0


async def test_uploads_in_flight_lease_together_and_leave_no_lease(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    """Concurrent uploads lease in shared statements (one content several times among
    them, taken in one lock order), a retried request keeps no lease, and every lease
    is gone once the items exist."""
    svc = dataset_service
    store: ItemStore = svc.runtime.deps_as(DatasetDeps).store
    ds = await svc.create_dataset()
    same = png_bytes(4, 4, color=(5, 6, 7))
    datas = [same] * 12 + [png_bytes(3, 3, color=(i, 0, 0)) for i in range(28)]
    batches_before = store._leaser.batches

    answers = await asyncio.gather(
        *(svc.upload(ds, data, f"f{n}.png") for n, data in enumerate(datas))
    )

    assert [a.status_code for a in answers] == [201] * len(datas)
    assert store._leaser.batches - batches_before < len(datas)
    headers = {**svc.auth(), "Idempotency-Key": "lease-retry"}
    for _ in range(2):
        again = await svc.http.post(
            f"/datasets/{ds}/items",
            files={"file": ("r.png", same, "application/octet-stream")},
            data={"dir": "/"},
            headers=headers,
        )
        assert again.status_code in (200, 201), again.text
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM blob_leases") == 0
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM items") == len(datas) + 1
