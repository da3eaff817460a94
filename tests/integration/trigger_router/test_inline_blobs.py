"""An ``item.created.v1`` that carries its small blob inline (``blob_base64``) hands it on
in the predict requests it creates, up to ``TRIGGER_ROUTER_INLINE_BLOB_MAX_BYTES``; larger
ones, other item events, and every one with the threshold at 0 carry none. Nothing of the
blob is stored in the ledger."""

from __future__ import annotations

import hashlib

from common.contracts import ItemCreated, ItemSnapshot, encode_inline_blob
from tests.integration.trigger_router.conftest import Router, RouterFactory, item_snapshot


def with_blob(router: Router, data: bytes, **overrides: object) -> ItemSnapshot:
    sha = hashlib.sha256(data).hexdigest()
    system = {"mimetype": "image/png", "size": len(data), "sha256": sha, "blob_key": sha}
    return item_snapshot(router.project_id, metadata={"system": system, "user": {}}, **overrides)


async def created_with_blob(router: Router, item: ItemSnapshot, data: bytes) -> None:
    await router.publish(
        "dataset", ItemCreated(item=item, blob_base64=encode_inline_blob(data)), subject=item.id
    )


async def test_a_small_inline_blob_goes_on_into_the_predict_request(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(inline_blob_max_bytes=64) as router:
        service = await router.deploy()
        await router.create_trigger(service)
        small, large = b"s" * 64, b"L" * 65
        small_item, large_item = with_blob(router, small), with_blob(router, large)

        await created_with_blob(router, small_item, small)
        await created_with_blob(router, large_item, large)

        requests = await router.predicts(service, 2)
        [stored] = await router.runtime.pool.fetch(
            "SELECT item::text AS item FROM executions WHERE item_id = $1", small_item.id
        )

    by_item = {r.body["data"]["item"]["id"]: r.body["data"] for r in requests}
    assert by_item[small_item.id]["blob_base64"] == encode_inline_blob(small)
    assert by_item[large_item.id].get("blob_base64") is None
    assert encode_inline_blob(small) not in stored["item"]


async def test_threshold_zero_hands_on_no_blob(router_factory: RouterFactory) -> None:
    async with router_factory(inline_blob_max_bytes=0) as router:
        service = await router.deploy()
        await router.create_trigger(service)
        data = b"tiny"
        item = with_blob(router, data)

        await created_with_blob(router, item, data)

        [request] = await router.predicts(service, 1)

    assert request.body["data"]["item"]["id"] == item.id
    assert request.body["data"].get("blob_base64") is None
