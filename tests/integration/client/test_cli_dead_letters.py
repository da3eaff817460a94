"""``prelabel dead-letters list`` and ``replay`` through the one URL (nginx in front of a
real dataset service): an ingest command whose blob was missing is dead-lettered; its
project lists it (the command's API key redacted) and replays it once the blob is there;
another project's dead letter stays where it is and never shows."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from common.contracts import IngestItem
from common.envelope import make_event
from common.s3 import blob_key
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import DATASET
from prelabel_client.client import PrelabelClient
from tests.integration.client.conftest import ServedDataset
from tests.integration.dataset.conftest import ADMIN_KEY, png_bytes


async def _other_project(served: ServedDataset) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=served.url, headers=admin) as http:
        project = (await http.post("/projects", json={"name": "other"})).json()
        key: str = (await http.post(f"/projects/{project['id']}/api-keys", json={})).json()["key"]
    return key


async def _ingest(served: ServedDataset, dataset_id: str, s3_key: str, api_key: str) -> str:
    command = make_event(
        IngestItem(dataset_id=dataset_id, s3_key=s3_key, name="late.png", api_key=api_key),
        source="/test",
    )
    await publish_raw(
        served.settings.amqp,
        f"{served.settings.topology_prefix}{DATASET}.commands",
        IngestItem.routing_key,
        command.to_json_bytes(),
    )
    return command.id


async def test_dead_letters_are_listed_and_replayed_with_the_cli(
    served_dataset: ServedDataset, bucket_client: Any
) -> None:
    served = served_dataset
    other_key = await _other_project(served)
    mine, theirs = PrelabelClient(served.url, served.api_key), PrelabelClient(served.url, other_key)
    try:
        dataset = await mine.create_dataset("late-blobs")
        other_dataset = await theirs.create_dataset("theirs")
        data = png_bytes(7, 5)
        key = blob_key(hashlib.sha256(data).hexdigest())
        command_id = await _ingest(served, dataset.id, key, served.api_key)
        other_id = await _ingest(served, other_dataset.id, key + "x", other_key)

        async def listed() -> Any:
            shown = await served.cli_in_thread(
                "dead-letters", "list", "--service", "dataset", "-o", "json"
            )
            assert shown.exit_code == 0, shown.stderr
            page = shown.json()
            return page if page["letters"] else None

        page = await wait_until(listed, timeout=15, message="the ingest command dead-lettered")
        (letter,) = page["letters"]
        assert letter["id"] == command_id
        assert letter["event_type"] == "prelabel.ingest_item.v1"
        assert "not found" in letter["reason"]
        assert letter["body"]["data"]["api_key"] == "***"
        assert letter["body"]["data"]["s3_key"] == key
        table = await served.cli_in_thread("dead-letters", "list", "--service", "dataset")
        assert table.exit_code == 0, table.stderr
        assert command_id in table.stdout
        assert served.api_key not in table.stdout + str(page)
        assert other_id not in table.stdout + str(page)

        # The blob arrives: the replayed command registers the item.
        await bucket_client.put_object(Bucket=served.settings.s3_bucket, Key=key, Body=data)
        replayed = await served.cli_in_thread(
            "dead-letters", "replay", "--service", "dataset", "--id", command_id, "-o", "json"
        )
        assert replayed.exit_code == 0, replayed.stderr
        assert (replayed.json()["replayed"], replayed.json()["not_found"]) == (1, 0)

        async def registered() -> bool:
            return (await mine.get_dataset(dataset.id)).item_count == 1

        await wait_until(registered, timeout=15, message="the replayed command registered")
        after = await served.cli_in_thread(
            "dead-letters", "list", "--service", "dataset", "-o", "json"
        )
        assert after.json()["letters"] == []

        # The other project's dead letter is where it was, and only it can see it.
        async with httpx.AsyncClient(
            base_url=served.url, headers={"Authorization": f"Bearer {other_key}"}
        ) as http:
            letters = (await http.get("/dead-letters")).json()["letters"]
        assert [letter["id"] for letter in letters] == [other_id]

        missing = await served.cli_in_thread("dead-letters", "replay", "--service", "dataset")
        assert missing.exit_code == 2
        refused = await served.cli_in_thread(
            "dead-letters", "replay", "--service", "dataset", "--id", other_id, "-o", "json"
        )
        assert refused.exit_code == 0, refused.stderr
        assert (refused.json()["replayed"], refused.json()["not_found"]) == (0, 1)
    finally:
        await mine.aclose()
        await theirs.aclose()
