"""Hostile ingest_item commands over the real broker, S3 and PostgreSQL: keys that climb
into another bucket, commands that do not prove their project, oversized or too deep
input, a reused command id with other data and an unknown version. Each is dead-lettered
with its reason and registers nothing."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from common.contracts import IngestItem
from common.envelope import make_event
from common.s3 import blob_key, delete_bucket, ensure_bucket
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import DATASET, DEAD_LETTER_REASON_HEADER
from dataset_service.adapters.blobs import ItemBlobs
from dataset_service.deps import Deps as DatasetDeps
from dataset_service.domain import TooLargeError
from dataset_service.usecases.items import IngestRequest, ItemStore
from tests.integration.dataset.conftest import DatasetService, png_bytes


@pytest.fixture
async def other_bucket(bucket_client: Any) -> AsyncIterator[str]:
    """A bucket the service was not configured with, holding ``secret.png``."""
    bucket = f"t-other-{uuid.uuid4().hex[:16]}"
    await ensure_bucket(bucket_client, bucket)
    await bucket_client.put_object(Bucket=bucket, Key="secret.png", Body=png_bytes(3, 3))
    yield bucket
    await delete_bucket(bucket_client, bucket)


def _command(ds: str, key: str | None, **fields: Any) -> IngestItem:
    return IngestItem(
        dataset_id=ds, s3_key=fields.pop("s3_key", "uploads/a.png"), api_key=key, **fields
    )


async def _send(
    svc: DatasetService, amqp_url: str, body: bytes, key: str = "ingest_item.v1"
) -> None:
    exchange = svc.runtime.topology.commands_exchange(DATASET)
    await publish_raw(amqp_url, exchange, key, body)


async def _dead_letters(svc: DatasetService, amqp_url: str, count: int) -> dict[bytes, str]:
    """The next ``count`` dead letters of the intake: body -> reason."""
    queue = svc.runtime.topology.queue(DATASET, "on_ingest_item") + ".dlq"
    connection = await aio_pika.connect_robust(amqp_url)
    got: dict[bytes, str] = {}
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(queue, passive=True)

        async def fetch() -> bool:
            message = await dlq.get(fail=False)
            if message is not None:
                await message.ack()
                got[message.body] = str(message.headers[DEAD_LETTER_REASON_HEADER])
            return len(got) >= count

        await wait_until(fetch, timeout=20, message=f"{count} dead letters in {queue}")
    finally:
        await connection.close()
    return got


async def _item_count(svc: DatasetService) -> int:
    count: int = await svc.runtime.pool.fetchval("SELECT count(*) FROM items")
    return count


async def test_keys_outside_the_bucket_are_dead_lettered_and_register_nothing(
    dataset_service: DatasetService, bucket_client: Any, other_bucket: str, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    keys = [
        f"../{other_bucket}/secret.png",
        f"uploads/x/../../../{other_bucket}/secret.png",
        f"uploads/../../{other_bucket}/secret.png",
        f"/{other_bucket}/secret.png",
    ]
    bodies = [
        make_event(
            _command(ds, svc.api_key, s3_key=k, name=f"s{n}.png"), source="/t"
        ).to_json_bytes()
        for n, k in enumerate(keys)
    ]
    for body in bodies:
        await _send(svc, amqp_url, body)

    reasons = await _dead_letters(svc, amqp_url, len(bodies))

    assert set(reasons) == set(bodies)
    for body in bodies:
        assert "s3_key" in reasons[body], reasons[body]
        assert "inside the bucket" in reasons[body] or "absolute" in reasons[body]
    assert await _item_count(svc) == 0


async def test_a_command_must_prove_its_project_with_a_key_of_the_datasets_project(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    await bucket_client.put_object(
        Bucket=svc.settings.s3_bucket, Key="uploads/a.png", Body=png_bytes()
    )
    _, other_key = await svc.new_project("intruder")
    bodies = {
        "none": make_event(_command(ds, None, name="a.png"), source="/t").to_json_bytes(),
        "unknown": make_event(_command(ds, "pk_guess", name="b.png"), source="/t").to_json_bytes(),
        "foreign": make_event(_command(ds, other_key, name="c.png"), source="/t").to_json_bytes(),
    }
    for body in bodies.values():
        await _send(svc, amqp_url, body)

    reasons = await _dead_letters(svc, amqp_url, len(bodies))

    assert "no api_key" in reasons[bodies["none"]]
    assert "not a valid project API key" in reasons[bodies["unknown"]]
    assert f"dataset {ds} not found" in reasons[bodies["foreign"]]
    assert await _item_count(svc) == 0
    # The project's own key registers the same blob.
    good = make_event(_command(ds, svc.api_key, name="ok.png"), source="/t")
    await _send(svc, amqp_url, good.to_json_bytes())
    created = await svc.events.wait_for(1, routing_key="item.created.v1")
    assert created[0].body["data"]["item"]["project_id"] == svc.project_id


async def test_oversized_too_deep_and_too_long_input_is_dead_lettered_with_the_limit(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    await bucket_client.put_object(
        Bucket=svc.settings.s3_bucket, Key="uploads/a.png", Body=png_bytes()
    )
    deep = make_event(_command(ds, svc.api_key, name="deep.png"), source="/t").to_json_bytes()
    deep = deep.replace(b'"metadata":{}', b'"metadata":' + b'{"a":' * 2000 + b"1" + b"}" * 2000)
    assert b'{"a":{"a":' in deep
    bodies = {
        "2 MB metadata": make_event(
            _command(ds, svc.api_key, name="m2.png", metadata={"x": "y" * 2_000_000}),
            source="/t",
        ).to_json_bytes(),
        "20 MB metadata": make_event(
            _command(ds, svc.api_key, name="m20.png", metadata={"x": "y" * 20_000_000}),
            source="/t",
        ).to_json_bytes(),
        "2000 deep": deep,
        "long name": make_event(
            _command(ds, svc.api_key, name="n" * 10_000), source="/t"
        ).to_json_bytes(),
    }
    for body in bodies.values():
        await _send(svc, amqp_url, body)

    reasons = await _dead_letters(svc, amqp_url, len(bodies))

    assert "the limit is 65536 bytes" in reasons[bodies["2 MB metadata"]]
    assert "the limit is 65536 bytes" in reasons[bodies["20 MB metadata"]]
    assert "deep" in reasons[bodies["2000 deep"]]
    assert "10000 characters long; the limit is 255" in reasons[bodies["long name"]]
    assert await _item_count(svc) == 0
    assert svc.events.of("item.created.v1") == []


class CountingBlobs(ItemBlobs):
    """The service's bucket, counting the objects read whole."""

    reads: int = 0

    async def get(self, key: str) -> bytes:
        type(self).reads += 1
        return await super().get(key)


async def test_an_object_over_the_limit_is_refused_before_it_is_read(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    deps = svc.runtime.deps_as(DatasetDeps)
    blobs = CountingBlobs(deps.store.blobs.s3, deps.store.blobs.blobs, svc.settings.s3_bucket)
    store = ItemStore(deps.repo, blobs, max_upload_bytes=svc.settings.max_upload_bytes)
    ds = await svc.create_dataset()
    big = b"\x89PNG" + b"0" * (svc.settings.max_upload_bytes + 1)
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key="uploads/big", Body=big)
    request = IngestRequest(
        dataset_id=ds,
        s3_key="uploads/big",
        name="big.png",
        directory="/",
        user_metadata={},
        origin_id=f"ingest:{uuid.uuid4().hex}",
        api_key=svc.api_key,
    )

    (result,) = await store.ingest_many([request])

    assert isinstance(result, TooLargeError)
    assert f"is {len(big)} bytes" in result.message
    assert CountingBlobs.reads == 0


async def test_the_same_command_id_with_other_data_is_dead_lettered_not_dropped(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(4, 4)
    key = blob_key(hashlib.sha256(data).hexdigest())
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)
    first = make_event(_command(ds, svc.api_key, s3_key=key, name="a.png"), source="/t")
    await _send(svc, amqp_url, first.to_json_bytes())
    await svc.events.wait_for(1, routing_key="item.created.v1")
    other = json.loads(first.to_json_bytes())
    other["data"]["name"] = "b.png"  # same command id, other data
    other_body = json.dumps(other).encode()
    await _send(svc, amqp_url, other_body)
    await _send(svc, amqp_url, first.to_json_bytes())  # a plain redelivery: a duplicate

    reasons = await _dead_letters(svc, amqp_url, 1)

    assert f"command id {first.id!r} was already used with different data" in reasons[other_body]

    async def duplicate_counted() -> bool:
        metric = svc.runtime.metrics.messages.labels("on_ingest_item", "duplicate")
        return bool(metric._value.get() >= 1)

    await wait_until(duplicate_counted, message="the redelivery handled as a duplicate")
    names = await svc.runtime.pool.fetch("SELECT name FROM items")
    assert [r["name"] for r in names] == ["a.png"]


async def test_a_command_of_an_unknown_version_is_dead_lettered_not_dropped(
    dataset_service: DatasetService, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    body = (
        make_event(_command(ds, svc.api_key, name="v2.png"), source="/t")
        .to_json_bytes()
        .replace(b"prelabel.ingest_item.v1", b"prelabel.ingest_item.v2")
    )

    await _send(svc, amqp_url, body, key="ingest_item.v2")

    reasons = await _dead_letters(svc, amqp_url, 1)
    assert "unknown version" in reasons[body]
    assert "prelabel.ingest_item.v2" in reasons[body]
