"""Which inline blobs an item event hands on to routing: those of ``item.created.v1``
within the router's threshold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.contracts import ItemCreated, ItemSnapshot, ItemUpdated, encode_inline_blob
from common.envelope import make_event
from trigger_router_service.domain.routing import item_event

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ITEM = ItemSnapshot(
    id="itm_1",
    project_id="prj_1",
    dataset_id="ds_1",
    name="a.png",
    filename="/a.png",
    dir="/",
    created_at=NOW,
    updated_at=NOW,
)


def created(data: bytes) -> ItemCreated:
    return ItemCreated(item=ITEM, blob_base64=encode_inline_blob(data))


@pytest.mark.parametrize(
    ("size", "threshold", "kept"),
    [(10, 10, True), (11, 10, False), (1, 0, False), (65_536, 65_536, True)],
)
def test_an_inline_blob_is_kept_up_to_the_threshold(size: int, threshold: int, kept: bool) -> None:
    event = make_event(created(b"x" * size), source="/services/dataset")

    routed = item_event(event, threshold)

    assert routed.blob_base64 == (encode_inline_blob(b"x" * size) if kept else None)


def test_events_without_a_blob_route_without_one() -> None:
    plain = make_event(ItemCreated(item=ITEM), source="/services/dataset")
    updated = make_event(ItemUpdated(item=ITEM), source="/services/dataset")

    assert item_event(plain, 65_536).blob_base64 is None
    assert item_event(updated, 65_536).blob_base64 is None
