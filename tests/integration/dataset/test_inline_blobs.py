"""Small blobs travel inside their ``item.created.v1`` (``blob_base64``), up to
``DATASET_INLINE_BLOB_MAX_BYTES``; larger ones, and every one with the threshold at 0, do
not. The blob is in S3 either way."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import Any

import pytest
from PIL import Image

from common.contracts import IngestItem, verified_inline_blob
from common.envelope import make_event
from common.s3 import blob_key
from common.settings import S3SettingsMixin
from common.testing.broker import publish_raw
from common.topology import DATASET
from dataset_service.settings import Settings
from tests.integration.dataset.conftest import DatasetService, dataset_settings, png_bytes

THRESHOLD = 2048


@pytest.fixture
def inline_blob_max_bytes() -> int:
    """The service's threshold (``@pytest.mark.parametrize`` on a test changes it)."""
    return THRESHOLD


@pytest.fixture
async def dataset_settings_(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    pg_schema: str,
    topology_prefix: str,
    inline_blob_max_bytes: int,
) -> Settings:
    return dataset_settings(
        database_url,
        amqp_url,
        s3_settings,
        s3_bucket,
        pg_schema,
        topology_prefix,
        inline_blob_max_bytes=inline_blob_max_bytes,
    )


def noisy_png(size: int) -> bytes:
    """A PNG that does not compress: at least ``size`` bytes."""
    side = int((size / 3) ** 0.5) + 2
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


async def created_events(svc: DatasetService, count: int) -> dict[str, dict[str, Any]]:
    """The ``item.created.v1`` data seen so far (at least ``count``), by item name."""
    events = await svc.events.wait_for(count, routing_key="item.created.v1")
    return {e.body["data"]["item"]["name"]: e.body["data"] for e in events}


async def test_small_blobs_travel_inside_their_item_created_and_large_ones_do_not(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    small, large = png_bytes(6, 5), noisy_png(THRESHOLD + 500)
    assert len(small) <= THRESHOLD < len(large)
    for name, data in (("small.png", small), ("large.png", large)):
        response = await svc.upload(ds, data, name)
        assert response.status_code == 201, response.text

    created = await created_events(svc, 2)

    inline = created["small.png"]["blob_base64"]
    assert base64.b64decode(inline) == small
    system = created["small.png"]["item"]["metadata"]["system"]
    assert verified_inline_blob(inline, system["sha256"]) == small
    assert created["large.png"].get("blob_base64") is None
    # S3 stays the source of truth: both blobs are there.
    for data in (small, large):
        key = blob_key(hashlib.sha256(data).hexdigest())
        stored = await bucket_client.get_object(Bucket=svc.settings.s3_bucket, Key=key)
        assert await stored["Body"].read() == data


async def test_an_ingested_small_blob_travels_inside_its_item_created(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(7, 3)
    key = blob_key(hashlib.sha256(data).hexdigest())
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)
    command = make_event(
        IngestItem(dataset_id=ds, s3_key=key, name="ingested.png", api_key=svc.api_key),
        source="/test",
    )
    exchange = svc.runtime.topology.commands_exchange(DATASET)
    await publish_raw(amqp_url, exchange, "ingest_item.v1", command.to_json_bytes())

    created = await created_events(svc, 1)

    assert base64.b64decode(created["ingested.png"]["blob_base64"]) == data


@pytest.mark.parametrize("inline_blob_max_bytes", [0])
async def test_threshold_zero_carries_no_blob(dataset_service: DatasetService) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    response = await svc.upload(ds, png_bytes(2, 2), "tiny.png")
    assert response.status_code == 201, response.text

    created = await created_events(svc, 1)

    assert created["tiny.png"].get("blob_base64") is None
