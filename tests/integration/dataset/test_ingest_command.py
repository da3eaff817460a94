"""ingest_item.v1 over the real broker: registered once, bad commands dead-lettered with a reason."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aio_pika

from common.contracts import IngestItem
from common.envelope import make_event
from common.s3 import blob_key
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import DATASET, DEAD_LETTER_REASON_HEADER
from dataset_service.deps import Deps as DatasetDeps
from dataset_service.domain import ConflictError, NotFoundError
from dataset_service.repository import NewItem, Repository
from dataset_service.usecases.items import IngestRequest, ItemStore
from tests.integration.dataset.conftest import DatasetService, png_bytes


def _commands(svc: DatasetService) -> str:
    return svc.runtime.topology.commands_exchange(DATASET)


async def _items(svc: DatasetService, ds: str) -> list[dict[str, Any]]:
    response = await svc.http.get(f"/datasets/{ds}/items", headers=svc.auth())
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _dead_letters(
    amqp_url: str, queue: str, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect_robust(amqp_url)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(queue, passive=True)

        async def fetch() -> bool:
            message = await dlq.get(fail=False)
            if message is not None:
                await message.ack()
                got.append(message)
            return len(got) >= count

        await wait_until(fetch, timeout=15, message=f"{count} dead letters in {queue}")
    finally:
        await connection.close()
    return got


async def test_ingest_registers_the_blob_once_even_when_redelivered(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(9, 4)
    key = blob_key(hashlib.sha256(data).hexdigest())
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)
    command = make_event(
        IngestItem(
            dataset_id=ds,
            s3_key=key,
            name="from-broker.png",
            dir="/ingest",
            metadata={"k": 1},
            api_key=svc.api_key,
        ),
        source="/test",
    )

    for _ in range(2):  # the same command id twice: a redelivery or a retrying client
        await publish_raw(amqp_url, _commands(svc), "ingest_item.v1", command.to_json_bytes())

    created = await svc.events.wait_for(1, routing_key="item.created.v1")
    item = created[0].body["data"]["item"]
    assert (item["filename"], item["metadata"]["user"]) == ("/ingest/from-broker.png", {"k": 1})
    assert item["metadata"]["system"]["width"] == 9

    async def handled_twice() -> bool:
        metric = svc.runtime.metrics.messages.labels("on_ingest_item", "duplicate")
        return metric._value.get() >= 1

    await wait_until(handled_twice, message="second delivery handled as a duplicate")
    assert len(await _items(svc, ds)) == 1
    assert len(svc.events.of("item.created.v1")) == 1


async def test_bad_ingest_commands_are_dead_lettered_with_the_reason(
    dataset_service: DatasetService, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    missing_blob = make_event(
        IngestItem(dataset_id=ds, s3_key="nope/x.png", name="x.png", api_key=svc.api_key),
        source="/t",
    )
    unknown_dataset = make_event(
        IngestItem(dataset_id="ds_missing", s3_key="nope", name="x.png", api_key=svc.api_key),
        source="/t",
    )
    bad = [
        b"{not json",
        b'{"specversion": "1.0", "type": "prelabel.ingest_item.v9", "source": "/t", "data": {}}',
        make_event(
            IngestItem(dataset_id=ds, s3_key="k", name="n", api_key=svc.api_key), source="/t"
        )
        .to_json_bytes()
        .replace(b'"name":"n"', b'"name":""'),
        missing_blob.to_json_bytes(),
        unknown_dataset.to_json_bytes(),
    ]
    for body in bad:
        await publish_raw(amqp_url, _commands(svc), "ingest_item.v1", body)

    queue = svc.runtime.topology.queue(DATASET, "on_ingest_item") + ".dlq"
    letters = await _dead_letters(amqp_url, queue, len(bad))
    reasons = {m.body: str(m.headers[DEAD_LETTER_REASON_HEADER]) for m in letters}

    assert set(reasons) == set(bad)
    assert "not JSON" in reasons[bad[0]]
    assert "unsupported event type 'prelabel.ingest_item.v9'" in reasons[bad[1]]
    assert "data.name" in reasons[bad[2]]
    assert "not found" in reasons[bad[3]]
    assert "dataset ds_missing not found" in reasons[bad[4]]
    assert await _items(svc, ds) == []


async def test_a_command_for_a_dataset_deleted_since_the_last_one_is_dead_lettered(
    dataset_service: DatasetService, bucket_client: Any, amqp_url: str
) -> None:
    svc = dataset_service
    ds = await svc.create_dataset()
    data = png_bytes(5, 5)
    key = blob_key(hashlib.sha256(data).hexdigest())
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)

    def command(name: str) -> bytes:
        return make_event(
            IngestItem(dataset_id=ds, s3_key=key, name=name, api_key=svc.api_key), source="/t"
        ).to_json_bytes()

    await publish_raw(amqp_url, _commands(svc), "ingest_item.v1", command("first.png"))
    await svc.events.wait_for(1, routing_key="item.created.v1")  # the service knows ds now
    deleted = await svc.http.delete(f"/datasets/{ds}", headers=svc.auth())
    assert deleted.status_code == 204
    # Deleting the dataset removed its now unused blob; the client puts it again.
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)
    late = command("late.png")
    await publish_raw(amqp_url, _commands(svc), "ingest_item.v1", late)

    queue = svc.runtime.topology.queue(DATASET, "on_ingest_item") + ".dlq"
    letters = await _dead_letters(amqp_url, queue, 1)

    assert letters[0].body == late
    assert f"dataset {ds} not found" in str(letters[0].headers[DEAD_LETTER_REASON_HEADER])
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM items") == 0


async def test_a_batch_registers_each_command_once_and_fails_only_the_bad_ones(
    dataset_service: DatasetService, bucket_client: Any
) -> None:
    svc = dataset_service
    store: ItemStore = svc.runtime.deps_as(DatasetDeps).store
    ds = await svc.create_dataset()
    data = png_bytes(6, 3)
    key = blob_key(hashlib.sha256(data).hexdigest())
    await bucket_client.put_object(Bucket=svc.settings.s3_bucket, Key=key, Body=data)

    def request(origin: str, name: str = "a.png", **changes: str) -> IngestRequest:
        fields: dict[str, Any] = {
            "dataset_id": ds,
            "s3_key": key,
            "name": name,
            "directory": "/batch",
            "user_metadata": {},
            "origin_id": origin,
            "api_key": svc.api_key,
        }
        return IngestRequest(**{**fields, **changes})

    results = await store.ingest_many(
        [
            request("ingest:1"),
            request("ingest:1"),  # the same command delivered twice
            request("ingest:2"),  # another command for the same path
            request("ingest:3", "b.png", s3_key="blobs/missing"),
            request("ingest:4", "c.png", dataset_id="ds_missing"),
            request("ingest:5", "d.png"),
        ]
    )

    first, again, clash, no_blob, no_dataset, other = results
    assert isinstance(first, tuple)
    assert first[1] is True
    assert isinstance(again, tuple)
    assert (again[0].id, again[1]) == (first[0].id, False)
    assert isinstance(clash, ConflictError)
    assert isinstance(no_blob, NotFoundError)
    assert "blobs/missing" in no_blob.message
    assert isinstance(no_dataset, NotFoundError)
    assert "ds_missing" in no_dataset.message
    assert isinstance(other, tuple)
    assert other[1] is True
    names = sorted(i["name"] for i in await _items(svc, ds))
    assert names == ["a.png", "d.png"]
    created = await svc.events.wait_for(2, routing_key="item.created.v1")
    assert sorted(m.body["data"]["item"]["name"] for m in created) == ["a.png", "d.png"]


async def test_twins_of_one_command_inserted_at_once_make_one_item_and_a_duplicate(
    dataset_service: DatasetService,
) -> None:
    svc = dataset_service
    repo: Repository = svc.runtime.deps_as(DatasetDeps).repo
    ds = await svc.create_dataset()
    project = await repo.dataset_project(ds)
    assert project is not None

    for n in range(20):  # the race is narrow: give it many chances
        twin = NewItem(
            project_id=project,
            dataset_id=ds,
            name=f"t{n}.png",
            filename=f"/twins/t{n}.png",
            dir="/twins",
            metadata={},
            origin_id=f"ingest:twin-{n}",
        )
        first, second = await asyncio.gather(repo.insert_items([twin]), repo.insert_items([twin]))
        (a,), (b,) = first, second
        assert a is not None
        assert b is not None
        assert a[0].id == b[0].id
        assert sorted([a[1], b[1]]) == [False, True]
