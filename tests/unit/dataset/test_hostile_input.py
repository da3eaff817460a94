"""The dataset service's rules against hostile input: keys that climb out of the bucket,
names that are too long, metadata too large or too deep (pure functions, no servers)."""

from __future__ import annotations

import json

import pytest

from common.asyncapi import INGEST_LIMITS, build_document
from common.messaging import PoisonMessageError
from dataset_service.domain import (
    MAX_DIR_DEPTH,
    MAX_KEY_BYTES,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_NAME_LENGTH,
    DatasetError,
    check_blob_key,
    check_user_metadata,
    normalize_dir,
    parse_user_metadata,
    sanitize_name,
)
from dataset_service.domain.metadata import metadata_depth
from dataset_service.handlers import parse_command


@pytest.mark.parametrize(
    "key",
    [
        "../other-bucket/key",
        "uploads/x/../../../other-bucket/key",
        "uploads/./a.png",
        "uploads//a.png",
        "uploads/a.png/",
        "/prelabel/uploads/a.png",
        "..",
        "uploads\\..\\a.png",
        "uploads/a\x00.png",
        "uploads/a\n.png",
        "uploads/cafe\u0301.png",  # not NFC
        "k" * (MAX_KEY_BYTES + 1),
        "",
    ],
)
def test_keys_that_leave_the_bucket_or_are_not_normalised_are_refused(key: str) -> None:
    with pytest.raises(DatasetError, match="s3_key"):
        check_blob_key(key)


@pytest.mark.parametrize(
    "key", ["uploads/a.png", "blobs/ab/cd/abcdef", "a..b/c.d", "x/%2e%2e/y", "k" * MAX_KEY_BYTES]
)
def test_ordinary_keys_pass_unchanged(key: str) -> None:
    assert check_blob_key(key) == key


def test_a_name_over_the_limit_is_refused_not_cut() -> None:
    assert sanitize_name("a" * (MAX_NAME_LENGTH - 4) + ".png") == "a" * 251 + ".png"
    with pytest.raises(
        DatasetError, match=f"10000 characters long; the limit is {MAX_NAME_LENGTH}"
    ):
        sanitize_name("n" * 10_000)
    with pytest.raises(DatasetError, match="the limit is 255"):
        normalize_dir("/ok/" + "d" * 300)
    with pytest.raises(DatasetError, match=f"deeper than {MAX_DIR_DEPTH}"):
        normalize_dir("/".join(["d"] * (MAX_DIR_DEPTH + 1)))


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_metadata_depth_is_counted_without_recursion() -> None:
    assert metadata_depth({}, 10) == 1
    assert metadata_depth({"a": [1, {"b": 2}]}, 10) == 3
    assert metadata_depth(nested(MAX_METADATA_DEPTH), MAX_METADATA_DEPTH) == MAX_METADATA_DEPTH
    # 100,000 deep: no RecursionError, and the count stops just past the limit.
    assert metadata_depth(nested(100_000), MAX_METADATA_DEPTH) == MAX_METADATA_DEPTH + 1


def test_metadata_over_the_size_or_depth_limit_is_refused() -> None:
    assert check_user_metadata(nested(MAX_METADATA_DEPTH)) == nested(MAX_METADATA_DEPTH)
    with pytest.raises(DatasetError, match=f"deeper than {MAX_METADATA_DEPTH} levels"):
        check_user_metadata(nested(MAX_METADATA_DEPTH + 1))
    with pytest.raises(DatasetError, match=f"deeper than {MAX_METADATA_DEPTH} levels"):
        parse_user_metadata('{"a":' * 2000 + "1" + "}" * 2000)
    big = {"x": "y" * MAX_METADATA_BYTES}
    with pytest.raises(DatasetError, match=f"the limit is {MAX_METADATA_BYTES} bytes"):
        check_user_metadata(big)
    with pytest.raises(DatasetError, match="the limit is"):
        parse_user_metadata(json.dumps({"x": "y" * 2_000_000}))


def test_a_command_nested_too_deep_for_the_parser_is_poison_not_a_crash() -> None:
    body = (
        '{"specversion":"1.0","id":"c1","source":"/t","type":"prelabel.ingest_item.v1",'
        '"data":{"dataset_id":"ds","s3_key":"k","name":"n","metadata":'
        + '{"a":' * 5000
        + "1"
        + "}" * 5000
        + "}}"
    )
    with pytest.raises(PoisonMessageError, match="deep"):
        parse_command(body.encode())


def test_another_version_of_the_command_is_poison_with_unknown_version() -> None:
    body = (
        b'{"specversion":"1.0","id":"c","source":"/t","type":"prelabel.ingest_item.v2","data":{}}'
    )
    with pytest.raises(PoisonMessageError, match="unknown version"):
        parse_command(body)


def test_the_asyncapi_document_states_the_limits_the_service_enforces() -> None:
    assert INGEST_LIMITS == {
        "metadata_bytes": MAX_METADATA_BYTES,
        "metadata_depth": MAX_METADATA_DEPTH,
        "name_characters": MAX_NAME_LENGTH,
        "s3_key_bytes": MAX_KEY_BYTES,
        "object_bytes_default": 50 * 1024 * 1024,
    }
    from dataset_service.settings import Settings

    default = Settings.model_fields["max_upload_bytes"].default
    assert INGEST_LIMITS["object_bytes_default"] == default
    channel = build_document()["channels"]["dataset.commands/ingest_item.v1"]
    rules = channel["x-prelabel-ingest"]
    assert "api_key" in rules["projectProof"]
    assert "'..'" in rules["s3Key"]
    assert "unknown version" in rules["unknownVersions"]
    assert rules["deadLetters"]["reasonHeader"] == "x-prelabel-dead-letter-reason"
    assert "api_key" in channel["description"]
