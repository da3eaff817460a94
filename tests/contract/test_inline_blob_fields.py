"""``blob_base64`` on ``item.created.v1`` and ``predict_item.v1``: an optional field added
to v1 (the version stays), readable by consumers that predate it and absent from bodies of
producers that predate it; the helpers that write and check it agree with each other."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from common.contracts import (
    ItemCreated,
    ItemSnapshot,
    PredictRequest,
    encode_inline_blob,
    inline_blob_size,
    verified_inline_blob,
)
from common.contracts.base import Contract

pytestmark = pytest.mark.contract

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


@pytest.mark.parametrize("contract", [ItemCreated, PredictRequest])
def test_blob_base64_is_optional_and_defaults_to_none(contract: type[Contract]) -> None:
    schema = contract.model_json_schema()
    assert "blob_base64" in schema["properties"]
    assert "blob_base64" not in schema.get("required", [])
    assert contract.model_fields["blob_base64"].default is None


def test_a_body_without_the_field_still_parses_and_one_with_it_is_read_by_older_readers() -> None:
    old_body = ItemCreated(item=ITEM).model_dump(mode="json")
    del old_body["blob_base64"]
    assert ItemCreated.model_validate(old_body).blob_base64 is None

    class OlderItemCreated(Contract):
        """``item.created.v1`` as a consumer written before the field knew it."""

        routing_key = "item.created.v1"
        producer = "dataset"
        item: ItemSnapshot
        """The new item."""

    new_body = ItemCreated(item=ITEM, blob_base64=encode_inline_blob(b"png")).model_dump()
    assert OlderItemCreated.model_validate(new_body).item == ITEM


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 64, 65_535, 65_536])
def test_inline_blob_size_is_the_size_of_the_blob_encoded(size: int) -> None:
    assert inline_blob_size(encode_inline_blob(b"x" * size)) == size


def test_verified_inline_blob_returns_the_bytes_only_when_they_are_the_content() -> None:
    data = b"\x89PNG small"
    sha = hashlib.sha256(data).hexdigest()
    text = encode_inline_blob(data)

    assert verified_inline_blob(text, sha) == data
    assert verified_inline_blob(encode_inline_blob(b"other"), sha) is None
    assert verified_inline_blob("not base64!", sha) is None
    assert verified_inline_blob(text, None) is None
    assert verified_inline_blob(None, sha) is None
