"""Typed views of contract fields: ``SystemMetadata`` of an item, and ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from common.contracts import ItemSnapshot, SystemMetadata
from common.ids import new_id


def _item(metadata: dict[str, Any]) -> ItemSnapshot:
    now = datetime.now(UTC)
    return ItemSnapshot(
        id="itm",
        project_id="prj",
        dataset_id="ds",
        name="a.png",
        filename="/a.png",
        dir="/",
        created_at=now,
        updated_at=now,
        metadata=metadata,
    )


def test_system_metadata_reads_what_the_dataset_service_records() -> None:
    system = {
        "mimetype": "image/png",
        "size": 1234,
        "sha256": "ab" * 32,
        "blob_key": "blobs/ab/cd",
        "width": 8,
        "height": 6,
    }
    item = _item({"system": system, "user": {"camera": "a7"}})

    assert item.system == SystemMetadata(**system)
    assert item.system.blob_key == "blobs/ab/cd"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, SystemMetadata()),
        ({"system": None}, SystemMetadata()),
        ({"system": "png"}, SystemMetadata()),
        # A field of the wrong type reads as missing; the others are kept.
        (
            {"system": {"size": "12", "mimetype": "text/plain"}},
            SystemMetadata(mimetype="text/plain"),
        ),
        ({"system": {"size": True, "width": 3}}, SystemMetadata(width=3)),
        ({"system": {"blob_key": 7, "extra": 1}}, SystemMetadata()),
    ],
)
def test_system_metadata_never_fails_on_odd_rows(
    metadata: dict[str, Any], expected: SystemMetadata
) -> None:
    assert SystemMetadata.of(metadata) == expected


def test_new_ids_have_their_prefix_and_length() -> None:
    assert re.fullmatch(r"trg_[0-9a-f]{32}", new_id("trg"))
    assert re.fullmatch(r"ann_[0-9a-f]{24}", new_id("ann", hex_chars=24))
    assert new_id("x") != new_id("x")
    with pytest.raises(ValueError, match=r"1\.\.32"):
        new_id("x", hex_chars=33)
