"""What the dataset browser asks of the dataset service, on the real PostgreSQL and S3:
thumbnails (made once per blob and size, then read from S3; ETag and 304; refusals),
directory listings with counts, and keyset paging by cursor."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from common.s3 import object_exists
from dataset_service.domain.thumbnails import thumbnail_key
from dataset_service.settings import Settings
from tests.integration.dataset.conftest import DatasetService, dataset_settings, png_bytes

MAX_PIXELS = 1_000_000


@pytest.fixture
async def dataset_settings_(
    database_url: str,
    amqp_url: str,
    s3_settings: Any,
    s3_bucket: str,
    pg_schema: str,
    topology_prefix: str,
) -> Settings:
    """The module's service refuses to thumbnail images over a million pixels (and takes
    uploads of a few MB: noise images of a few hundred pixels a side)."""
    settings = dataset_settings(
        database_url, amqp_url, s3_settings, s3_bucket, pg_schema, topology_prefix
    )
    return settings.model_copy(
        update={"thumbnail_max_pixels": MAX_PIXELS, "max_upload_bytes": 5_000_000}
    )


async def _thumbnails_counted(svc: DatasetService) -> dict[str, float]:
    """``prelabel_dataset_thumbnails_total`` by source, from the service's /metrics."""
    exposition = (await svc.http.get("/metrics")).text
    counts = {"generated": 0.0, "stored": 0.0, "shared": 0.0}
    for family in text_string_to_metric_families(exposition):
        if family.name == "prelabel_dataset_thumbnails":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["source"]] = sample.value
    return counts


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {source: after[source] - before[source] for source in before}


async def _image_item(svc: DatasetService, ds: str, name: str, data: bytes) -> dict[str, Any]:
    response = await svc.upload(ds, data, name)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def _noise_png(width: int, height: int, seed: int) -> bytes:
    image = Image.effect_noise((width, height), 40 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_thumbnail_is_made_once_then_read_from_s3(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = await _image_item(svc, ds, "wide.png", _noise_png(600, 300, 1))
    sha = item["metadata"]["system"]["sha256"]
    key = thumbnail_key(sha, 256)
    assert not await object_exists(bucket_client, svc.settings.s3_bucket, key)
    url = f"/items/{item['id']}/thumbnail"

    before = await _thumbnails_counted(svc)
    first = await svc.http.get(url, params={"size": 256}, headers=svc.auth())
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["cache-control"].startswith("private, max-age=")
    with Image.open(io.BytesIO(first.content)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (256, 128))
    assert _delta(before, await _thumbnails_counted(svc)) == {
        "generated": 1.0,
        "stored": 0.0,
        "shared": 0.0,
    }
    stored = await bucket_client.get_object(Bucket=svc.settings.s3_bucket, Key=key)
    async with stored["Body"] as body:
        assert await body.read() == first.content
    assert stored["ContentType"] == "image/webp"

    second = await svc.http.get(url, params={"size": 256}, headers=svc.auth())
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert _delta(before, await _thumbnails_counted(svc)) == {
        "generated": 1.0,
        "stored": 1.0,
        "shared": 0.0,
    }
    again = await bucket_client.head_object(Bucket=svc.settings.s3_bucket, Key=key)
    assert again["LastModified"] == stored["LastModified"]  # not written a second time

    # A small image is never enlarged; another size is another thumbnail.
    small = await _image_item(svc, ds, "small.png", png_bytes(40, 20))
    answer = await svc.http.get(
        f"/items/{small['id']}/thumbnail", params={"size": 128}, headers=svc.auth()
    )
    with Image.open(io.BytesIO(answer.content)) as thumb:
        assert thumb.size == (40, 20)


async def test_concurrent_first_requests_make_one_thumbnail(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = await _image_item(svc, ds, "busy.png", _noise_png(800, 800, 2))
    before = await _thumbnails_counted(svc)
    answers = await asyncio.gather(
        *(
            svc.http.get(f"/items/{item['id']}/thumbnail", params={"size": 512}, headers=svc.auth())
            for _ in range(6)
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    counted = _delta(before, await _thumbnails_counted(svc))
    assert counted["generated"] == 1.0
    assert counted["generated"] + counted["stored"] + counted["shared"] == 6.0


async def test_if_none_match_with_the_etag_answers_304(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = await _image_item(svc, ds, "cat.png", png_bytes(300, 200))
    url = f"/items/{item['id']}/thumbnail"
    first = await svc.http.get(url, headers=svc.auth())
    etag = first.headers["etag"]
    assert etag.startswith('"')  # strong: no W/

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await svc.http.get(url, headers={**svc.auth(), "If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    other = await svc.http.get(url, headers={**svc.auth(), "If-None-Match": '"stale"'})
    assert other.status_code == 200
    resized = await svc.http.get(
        url, params={"size": 128}, headers={**svc.auth(), "If-None-Match": etag}
    )
    assert resized.status_code == 200  # another size has another ETag
    assert resized.headers["etag"] != etag


async def test_thumbnail_refusals_say_why(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    image = await _image_item(svc, ds, "cat.png", png_bytes(30, 30))
    url = f"/items/{image['id']}/thumbnail"

    odd = await svc.http.get(url, params={"size": 100}, headers=svc.auth())
    assert odd.status_code == 422
    assert odd.json()["detail"] == "thumbnail size 100 is not offered; sizes: 128, 256, 512"
    assert (await svc.http.get(url, params={"size": "big"}, headers=svc.auth())).status_code == 422

    text = await svc.upload(ds, b"just some words", "notes.txt")
    refused = await svc.http.get(f"/items/{text.json()['id']}/thumbnail", headers=svc.auth())
    assert refused.status_code == 422
    assert "text/plain, not an image" in refused.json()["detail"]

    # A PNG whose header reads but whose pixel data is cut short.
    whole = _noise_png(64, 64, 3)
    broken = await _image_item(svc, ds, "broken.png", whole[: len(whole) // 2])
    undecodable = await svc.http.get(f"/items/{broken['id']}/thumbnail", headers=svc.auth())
    assert undecodable.status_code == 422
    assert undecodable.json()["detail"].startswith("image cannot be decoded")

    missing = await svc.http.get("/items/itm_nope/thumbnail", headers=svc.auth())
    assert missing.status_code == 404


async def test_decompression_bomb_is_refused_before_decoding(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    # 2,000 x 1,000 one-bit pixels: a few hundred bytes on the wire, two million pixels.
    buffer = io.BytesIO()
    Image.new("1", (2000, 1000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 10_000
    bomb = await _image_item(svc, ds, "bomb.png", buffer.getvalue())
    before = await _thumbnails_counted(svc)
    refused = await svc.http.get(f"/items/{bomb['id']}/thumbnail", headers=svc.auth())
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"image is 2000x1000 = 2000000 pixels; thumbnails are made of images up to "
        f"{MAX_PIXELS} pixels"
    )
    assert _delta(before, await _thumbnails_counted(svc))["generated"] == 0.0


async def test_another_projects_item_has_no_thumbnail(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = await _image_item(svc, ds, "mine.png", png_bytes(20, 20))
    _, other_key = await svc.new_project("rival")
    url = f"/items/{item['id']}/thumbnail"
    theirs = await svc.http.get(url, headers=svc.auth(other_key))
    assert theirs.status_code == 404
    etag = (await svc.http.get(url, headers=svc.auth())).headers["etag"]
    probing = await svc.http.get(url, headers={**svc.auth(other_key), "If-None-Match": etag})
    assert probing.status_code == 404  # an ETag tells nothing about another project's item


async def test_deleting_the_last_item_of_a_blob_removes_its_thumbnails(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    item = await _image_item(svc, ds, "gone.png", png_bytes(50, 50, (1, 2, 3)))
    sha = item["metadata"]["system"]["sha256"]
    for size in (128, 256):
        answer = await svc.http.get(
            f"/items/{item['id']}/thumbnail", params={"size": size}, headers=svc.auth()
        )
        assert answer.status_code == 200
    bucket = svc.settings.s3_bucket
    assert await object_exists(bucket_client, bucket, thumbnail_key(sha, 128))
    assert (await svc.http.delete(f"/items/{item['id']}", headers=svc.auth())).status_code == 204
    for size in (128, 256):
        assert not await object_exists(bucket_client, bucket, thumbnail_key(sha, size))


async def test_directories_list_children_with_item_counts(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    layout = {"/": 1, "/a": 2, "/a/b": 3, "/a/b/c": 1, "/a-b": 1, "/d": 2}
    n = 0
    for directory, count in layout.items():
        for _ in range(count):
            n += 1
            assert (await svc.upload(ds, b"x" * n, f"f{n}.txt", directory=directory)).is_success
    hidden = (await svc.upload(ds, b"hidden", "h.txt", directory="/d")).json()
    await svc.http.patch(f"/items/{hidden['id']}", json={"hidden": True}, headers=svc.auth())

    def entries(body: dict[str, Any]) -> list[tuple[str, str, int, bool]]:
        return [(c["dir"], c["name"], c["item_count"], c["has_children"]) for c in body["children"]]

    url = f"/datasets/{ds}/directories"
    root = (await svc.http.get(url, headers=svc.auth())).json()
    assert (root["parent"], root["item_count"], root["direct_count"]) == ("/", 10, 1)
    assert entries(root) == [
        ("/a", "a", 6, True),
        ("/a-b", "a-b", 1, False),
        ("/d", "d", 2, False),  # the hidden item is not counted, as queries hide it
    ]
    assert not root["truncated"]
    a = (await svc.http.get(url, params={"parent": "/a"}, headers=svc.auth())).json()
    assert (a["item_count"], a["direct_count"]) == (6, 2)  # not /a-b, which only looks alike
    assert entries(a) == [("/a/b", "b", 4, True)]
    b = (await svc.http.get(url, params={"parent": "a/b/"}, headers=svc.auth())).json()
    assert (b["parent"], entries(b)) == ("/a/b", [("/a/b/c", "c", 1, False)])
    empty = (await svc.http.get(url, params={"parent": "/nowhere"}, headers=svc.auth())).json()
    assert (empty["item_count"], empty["children"]) == (0, [])

    _, other_key = await svc.new_project("rival-dirs")
    assert (await svc.http.get(url, headers=svc.auth(other_key))).status_code == 404


async def test_cursor_pages_walk_forwards_and_back(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    for n in range(7):
        assert (await svc.upload(ds, f"item {n}".encode(), f"f{n}.txt")).is_success
    query = f"/datasets/{ds}/items/query"

    async def page(**body: Any) -> dict[str, Any]:
        answer = await svc.http.post(query, json={"page_size": 3, **body}, headers=svc.auth())
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def names(body: dict[str, Any]) -> list[str]:
        return [i["name"] for i in body["items"]]

    first = await page()
    assert (names(first), first["prev_cursor"], first["has_next"]) == (
        ["f0.txt", "f1.txt", "f2.txt"],
        None,
        True,
    )
    second = await page(cursor=first["next_cursor"])
    third = await page(cursor=second["next_cursor"])
    assert names(second) == ["f3.txt", "f4.txt", "f5.txt"]
    assert (names(third), third["has_next"], third["next_cursor"]) == (["f6.txt"], False, None)
    assert third["total_count"] == 7
    back = await page(cursor=third["prev_cursor"])
    assert names(back) == names(second)
    assert names(await page(cursor=back["prev_cursor"])) == names(first)
    # The GET form takes the cursor too; descending order has cursors of its own.
    listed = await svc.http.get(
        f"/datasets/{ds}/items",
        params={"page_size": 3, "cursor": first["next_cursor"]},
        headers=svc.auth(),
    )
    assert names(listed.json()) == names(second)
    down = await page(sort={"name": "desc"})
    assert names(await page(sort={"name": "desc"}, cursor=down["next_cursor"])) == [
        "f3.txt",
        "f2.txt",
        "f1.txt",
    ]

    for body, message in (
        ({"cursor": "not-a-cursor"}, "cursor is not one this service made"),
        ({"cursor": first["next_cursor"], "page": 1}, "give either cursor or page, not both"),
        (
            {"cursor": first["next_cursor"], "sort": {"name": "desc"}},
            "cursor belongs to another sort",
        ),
    ):
        refused = await svc.http.post(query, json=body, headers=svc.auth())
        assert refused.status_code == 400, body
        assert message in str(refused.json()["detail"]), refused.text
    by_metadata = await svc.http.post(
        query,
        json={"cursor": first["next_cursor"], "sort": {"metadata.user.x": "asc"}},
        headers=svc.auth(),
    )
    assert by_metadata.status_code == 400
    assert "cursor paging sorts by item columns only" in by_metadata.text


async def test_thumbnail_route_is_in_the_openapi_document(dataset_service: DatasetService) -> None:
    document = (await dataset_service.http.get("/openapi.json")).json()
    route = document["paths"]["/items/{item_id}/thumbnail"]["get"]
    assert {"200", "304", "404", "422"} <= set(route["responses"])
    assert "/datasets/{dataset_id}/directories" in document["paths"]
