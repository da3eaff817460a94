"""The ``prelabel`` CLI and SDK against a real dataset service (PostgreSQL, S3, RabbitMQ),
through nginx (``PRELABEL_URL``)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

from common.s3 import blob_key, get_bytes
from common.testing.waits import wait_until
from prelabel_client.broker import CHECK_BEFORE_PUT_BYTES, BrokerIngestor
from prelabel_client.client import PrelabelClient
from prelabel_client.models import Item
from prelabel_client.settings import ClientSettings
from tests.integration.client.conftest import ServedDataset, noisy_jpeg, write_jpegs

MANY = 1000


async def _all_items(client: PrelabelClient, dataset_id: str) -> list[Item]:
    return [item async for item in client.iter_items(dataset_id, {})]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_thousand_jpegs_upload_over_http_then_a_rerun_skips_them_all(
    served_dataset: ServedDataset, tmp_path: Path
) -> None:
    svc = served_dataset
    folder = tmp_path / "photos"
    paths = write_jpegs(folder, MANY, seed=1, subfolders=4)

    started = time.monotonic()
    first = await svc.cli(
        "upload", str(folder), "--dataset", "photos", "--create-dataset",
        "--dir", "/batch1", "--metadata", '{"source": "cli-test"}',
    )  # fmt: skip
    upload_s = time.monotonic() - started

    assert first.exit_code == 0, first.stderr + first.stdout
    assert "upload summary" in first.stdout
    assert re.search(rf"uploaded\s*│\s*{MANY}\s*│", first.stdout), first.stdout
    async with svc.client() as client:
        dataset = await client.dataset_by_name("photos")
        # Every file went through nginx (PRELABEL_URL), one request each.
        posted = f"POST /api/dataset/datasets/{dataset.id}/items "
        assert sum(line.startswith(posted) for line in svc.proxy.requests()) == MANY
        items = await _all_items(client, dataset.id)
        by_filename = {item.filename: item for item in items}
        # Every file is an item, in its folder's remote dir, with the local file's content.
        assert len(items) == MANY
        for path in paths:
            remote = f"/batch1/{path.parent.name}/{path.name}"
            item = by_filename[remote]
            assert item.metadata["system"]["sha256"] == _sha(path), remote
            assert item.metadata["system"]["mimetype"] == "image/jpeg"
            assert item.metadata["user"] == {"source": "cli-test"}
        # Blobs are readable: a spot check streams some back byte for byte.
        for path in random.Random(7).sample(paths, 25):
            item = by_filename[f"/batch1/{path.parent.name}/{path.name}"]
            assert await client.download_item(item.id) == path.read_bytes()

        created = await svc.events.wait_for(MANY, routing_key="item.created.v1", timeout=60)
        assert {e.body["data"]["item"]["id"] for e in created} == {item.id for item in items}

        started = time.monotonic()
        again = await svc.cli(
            "upload", str(folder), "--dataset", "photos", "--dir", "/batch1", "--json"
        )
        rerun_s = time.monotonic() - started

        assert again.exit_code == 0, again.stderr
        summary = again.json()
        assert summary["counts"] == {"uploaded": 0, "skipped": MANY, "failed": 0}
        assert {s["item_id"] for s in summary["skipped"]} == {item.id for item in items}
        assert (await client.get_dataset(dataset.id)).item_count == MANY
    print(f"\n{MANY} files: upload {upload_s:.1f} s ({MANY / upload_s:.0f} files/s), "
          f"rerun {rerun_s:.1f} s")  # fmt: skip


async def test_broker_path_registers_items_and_emits_events(
    served_dataset: ServedDataset, tmp_path: Path
) -> None:
    svc = served_dataset
    folder = tmp_path / "drop"
    paths = write_jpegs(folder, 100, seed=2, subfolders=2)
    async with svc.client() as client:
        dataset = await client.create_dataset("via-broker")

        result = await svc.cli(
            "upload", str(folder), "-d", "via-broker", "--dir", "/ingest", "--via", "broker",
            "--metadata", '{"path": "broker"}', "--json",
        )  # fmt: skip

        assert result.exit_code == 0, result.stderr + result.stdout
        assert result.json()["counts"] == {"uploaded": 100, "skipped": 0, "failed": 0}

        async def registered() -> list[Item]:
            items = await _all_items(client, dataset.id)
            return items if len(items) == 100 else []

        items = await wait_until(registered, timeout=30, message="100 ingested items")
        by_filename = {item.filename: item for item in items}
        for path in paths:
            item = by_filename[f"/ingest/{path.parent.name}/{path.name}"]
            assert item.metadata["system"]["sha256"] == _sha(path)
            assert item.metadata["user"] == {"path": "broker"}
        sample = paths[13]
        item = by_filename[f"/ingest/{sample.parent.name}/{sample.name}"]
        assert await client.download_item(item.id) == sample.read_bytes()
        created = await svc.events.wait_for(100, routing_key="item.created.v1", timeout=30)
        assert {e.body["data"]["item"]["id"] for e in created} == {i.id for i in items}

        rerun = await svc.cli("upload", str(folder), "-d", "via-broker", "--dir", "/ingest",
                              "--via", "broker", "--json")  # fmt: skip
        assert rerun.json()["counts"] == {"uploaded": 0, "skipped": 100, "failed": 0}


async def test_bad_files_fail_with_the_servers_reason_and_the_rest_upload(
    served_dataset: ServedDataset, tmp_path: Path
) -> None:
    svc = served_dataset
    folder = tmp_path / "mixed"
    good = write_jpegs(folder, 5, seed=3)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "archive.zip").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)

    result = await svc.cli(
        "upload", str(folder), "-d", "mixed", "--create-dataset", "--json"
    )  # fmt: skip

    assert result.exit_code == 8  # partial failure
    summary = result.json()
    assert summary["counts"] == {"uploaded": 5, "skipped": 0, "failed": 2}
    assert {Path(u["path"]) for u in summary["uploaded"]} == set(good)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert reasons["empty.jpg"] == "HTTP 400: file is empty"
    assert reasons["archive.zip"].startswith(
        "HTTP 415: content type application/zip is not supported"
    )
    assert "image/jpeg" in reasons["archive.zip"]  # the server lists what is supported

    # The human summary shows the failed files with their reasons too.
    human = await svc.cli("upload", str(folder), "-d", "mixed")
    assert human.exit_code == 8
    assert "failed files" in human.stdout
    assert "file is empty" in human.stdout
    async with svc.client() as client:
        dataset = await client.dataset_by_name("mixed")
        assert len(await _all_items(client, dataset.id)) == 5


async def test_same_idempotency_key_twice_makes_one_item(served_dataset: ServedDataset) -> None:
    svc = served_dataset
    data = noisy_jpeg(42)
    key = uuid.uuid4().hex
    async with svc.client() as client:
        dataset = await client.create_dataset("idem")

        first = await client.upload_file(dataset.id, data, "a.jpg", idempotency_key=key)
        again = await client.upload_file(dataset.id, data, "a.jpg", idempotency_key=key)

        assert again.id == first.id
        assert (await client.get_dataset(dataset.id)).item_count == 1
        await svc.events.wait_for(1, routing_key="item.created.v1")
        assert await client.download_item(first.id) == data


async def test_datasets_and_items_commands(served_dataset: ServedDataset, tmp_path: Path) -> None:
    svc = served_dataset
    created = await svc.cli_in_thread("datasets", "create", "cats", "--description", "felines")
    assert created.exit_code == 0, created.stderr
    assert "created dataset cats" in created.stdout
    photos = write_jpegs(tmp_path / "c", 3, seed=4)
    async with svc.client() as client:
        dataset = await client.dataset_by_name("cats")
        for path in photos:
            await client.upload_file(dataset.id, path, remote_dir="/x")

    listed = await svc.cli_in_thread("datasets", "list")
    items = await svc.cli_in_thread(
        "items", "list", "-d", "cats", "--filter", json.dumps({"name": "img_00001.jpg"})
    )
    missing = await svc.cli_in_thread("items", "list", "-d", "dogs")
    bad_filter = await svc.cli_in_thread(
        "items", "list", "-d", "cats", "--filter", '{"name": {"$regex": 1}}'
    )

    assert listed.exit_code == 0
    assert "cats" in listed.stdout
    assert dataset.id in listed.stdout
    assert items.exit_code == 0, items.stderr
    assert "/x/img_00001.jpg" in items.stdout
    assert "1 of 1 matching items" in items.stdout
    assert missing.exit_code == 5  # not found
    assert "no dataset called or with id 'dogs'" in missing.stderr
    assert bad_filter.exit_code == 2  # usage: the service refused the filter
    assert "HTTP 400" in bad_filter.stderr
    assert "$regex" in bad_filter.stderr  # the service says which operator is wrong


async def test_broker_path_puts_big_blobs_only_when_missing(
    served_dataset: ServedDataset, bucket_client: Any
) -> None:
    svc = served_dataset
    big, small = CHECK_BEFORE_PUT_BYTES, 10
    big_key, small_key = "b" * 64, "s" * 64
    async with BrokerIngestor.from_settings(ClientSettings(**_client_env(svc))) as ingestor:
        for key, size in ((big_key, big), (small_key, small)):
            await ingestor.put_blob(b"1" * size, key)
            # Same key, other bytes: only a put that really happens changes the object.
            await ingestor.put_blob(b"2" * size, key)

    bucket = svc.settings.s3_bucket
    assert (await get_bytes(bucket_client, bucket, blob_key(big_key)))[:1] == b"1"
    assert (await get_bytes(bucket_client, bucket, blob_key(small_key)))[:1] == b"2"


def _client_env(svc: ServedDataset) -> dict[str, Any]:
    env = svc.cli_env()
    return {
        key.removeprefix("PRELABEL_").lower(): value
        for key, value in env.items()
        if key.startswith("PRELABEL_")
    }
