"""The AsyncAPI document generated from the contracts (common.asyncapi) is pinned
by a snapshot, is structurally sound, and describes what the services really send.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel

from common.asyncapi import ASYNCAPI_VERSION, build_document, channel_of, render
from common.contracts import (
    ALL_CONTRACTS,
    BudgetExhausted,
    IngestItem,
    ItemCreated,
    ItemSnapshot,
    PredictRequest,
)
from common.envelope import CloudEvent, make_event
from common.topology import Topology
from tests.contract.support import REPO

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` value in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer (``#/a/b``)."""
    assert ref.startswith("#/"), f"only local references are expected: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"unresolved {ref}"
        assert part in node, f"unresolved {ref}"
        node = node[part]
    return node


def test_asyncapi_document_matches_snapshot(
    document: dict[str, Any], snapshot: Callable[[str, str], None]
) -> None:
    snapshot("asyncapi.json", render(document))


def test_document_is_asyncapi_2_6(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == ASYNCAPI_VERSION == "2.6.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document["servers"]["rabbitmq"]["protocol"] == "amqp"


def test_every_contract_has_a_channel_and_a_message(document: dict[str, Any]) -> None:
    channels = document["channels"]
    messages = document["components"]["messages"]
    for contract in ALL_CONTRACTS:
        spec = channel_of(contract, Topology())
        channel = channels[spec.name]
        operation = channel["publish" if contract.kind == "command" else "subscribe"]
        message = resolve(document, operation["message"]["$ref"])
        assert message is messages[contract.__name__]
        assert message["name"] == message["messageId"] == contract.routing_key
        assert message["x-cloudevents-type"] == f"prelabel.{contract.routing_key}"
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert exchange["name"] == spec.exchange
    assert len(channels) == len(ALL_CONTRACTS)


def test_channels_use_the_topology_names(document: dict[str, Any]) -> None:
    names = set(document["channels"])
    assert "dataset.events/item.created.v1" in names
    assert "dataset.commands/ingest_item.v1" in names
    assert "model_serving.predict/{service_id}" in names
    assert document["channels"]["dataset.commands/ingest_item.v1"]["publish"]
    assert document["channels"]["dataset.events/item.created.v1"]["subscribe"]
    predict = channel_of(PredictRequest, Topology())
    assert (predict.exchange, predict.exchange_type) == ("model_serving.predict", "direct")


def test_channel_parameters_match_the_channel_name(document: dict[str, Any]) -> None:
    for name, channel in document["channels"].items():
        placeholders = set(re.findall(r"{(\w+)}", name))
        assert placeholders == set(channel.get("parameters", {})), name


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [
        op["operationId"]
        for channel in document["channels"].values()
        for kind in ("publish", "subscribe")
        if (op := channel.get(kind))
    ]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert found, "the document should reference its components"
    for ref in found:
        resolve(document, ref)


def _validate_against_payload(
    document: dict[str, Any], contract: type[BaseModel], body: bytes
) -> None:
    message = document["components"]["messages"][contract.__name__]
    # The payload references components of the same document, so validate with the
    # document's components at the root of the schema.
    schema = {"components": document["components"], **message["payload"]}
    jsonschema.Draft202012Validator(schema).validate(json.loads(body))


def _item() -> ItemSnapshot:
    now = datetime.now(UTC)
    return ItemSnapshot(
        id="it_1",
        project_id="p_1",
        dataset_id="ds_1",
        name="cat.jpg",
        filename="/batch1/cat.jpg",
        dir="/batch1",
        created_at=now,
        updated_at=now,
        metadata={"system": {"mimetype": "image/jpeg"}, "user": {"split": "train"}},
    )


def test_payload_schemas_accept_real_events(document: dict[str, Any]) -> None:
    created = make_event(ItemCreated(item=_item()), source="/services/dataset", subject="it_1")
    _validate_against_payload(document, ItemCreated, created.to_json_bytes())
    exhausted = make_event(
        BudgetExhausted(
            project_id="p_1", budget=Decimal("5"), spent=Decimal("5.01"), at=datetime.now(UTC)
        ),
        source="/services/billing",
    )
    _validate_against_payload(document, BudgetExhausted, exhausted.to_json_bytes())


def test_payload_schema_rejects_another_messages_type(document: dict[str, Any]) -> None:
    created = make_event(ItemCreated(item=_item()), source="/services/dataset")
    with pytest.raises(jsonschema.ValidationError):
        _validate_against_payload(
            document,
            ItemCreated,
            created.model_copy(update={"type": "prelabel.item.deleted.v1"}).to_json_bytes(),
        )


def test_ingest_command_payload_is_documented(document: dict[str, Any]) -> None:
    # What an upload client in another language publishes: checked field by field
    # against the schema the dataset service validates with.
    payload = resolve(document, document["components"]["messages"]["IngestItem"]["payload"]["$ref"])
    data_schema = resolve(document, payload["properties"]["data"]["$ref"])
    assert data_schema == resolve(document, f"#/components/schemas/{IngestItem.__name__}")
    assert {"dataset_id", "s3_key", "name"} <= set(data_schema["required"])
    assert CloudEvent[IngestItem].model_json_schema()["required"] == payload["required"]


def test_cli_prints_the_document() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "common.asyncapi"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
    )
    assert printed.stdout == render(build_document())
