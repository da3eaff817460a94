"""Every message contract's JSON Schema is pinned by a committed snapshot.

A change to a contract shows up as a snapshot diff in review: adding an optional
field keeps the version, anything else needs a new ``.vN`` contract (ARCHITECTURE.md,
Messaging). ``PRELABEL_UPDATE_SNAPSHOTS=1`` rewrites the snapshots.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from common.contracts import ALL_CONTRACTS, REGISTRY, BudgetExhausted, Contract
from common.envelope import TYPE_PREFIX, CloudEvent, make_event
from tests.contract.support import SNAPSHOTS

pytestmark = pytest.mark.contract

ENVELOPE_SNAPSHOT = "cloudevent.json"
ASYNCAPI_SNAPSHOT = "asyncapi.json"
CONTRACT_IDS = [c.routing_key for c in ALL_CONTRACTS]

EVENT_KEY = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*\.v[1-9][0-9]*$")
COMMAND_KEY = re.compile(r"^[a-z]+_[a-z][a-z_]*\.v[1-9][0-9]*$")
KNOWN_PRODUCERS = {"dataset", "trigger_router", "model_serving", "annotation", "billing"}


def schema_text(schema: dict[str, Any]) -> str:
    """Stable text of a JSON Schema: sorted keys, so only real changes diff."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=CONTRACT_IDS)
def test_contract_schema_matches_snapshot(
    contract: type[Contract], snapshot: Callable[[str, str], None]
) -> None:
    snapshot(f"{contract.routing_key}.json", schema_text(contract.model_json_schema()))


def test_envelope_schema_matches_snapshot(snapshot: Callable[[str, str], None]) -> None:
    snapshot(ENVELOPE_SNAPSHOT, schema_text(CloudEvent[Contract].model_json_schema()))


def test_no_snapshot_outlives_its_contract() -> None:
    expected = {f"{key}.json" for key in REGISTRY} | {ENVELOPE_SNAPSHOT, ASYNCAPI_SNAPSHOT}
    stale = sorted(p.name for p in SNAPSHOTS.glob("*.json") if p.name not in expected)
    assert stale == [], "delete snapshots of contracts that no longer exist"


def test_routing_keys_are_unique() -> None:
    assert len(REGISTRY) == len(ALL_CONTRACTS)


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=CONTRACT_IDS)
def test_routing_key_follows_the_naming_rules(contract: type[Contract]) -> None:
    # Events: <entity>.<past tense>.vN; commands: <verb>_<entity>.vN.
    pattern = COMMAND_KEY if contract.kind == "command" else EVENT_KEY
    assert pattern.match(contract.routing_key), contract.routing_key
    assert contract.producer in KNOWN_PRODUCERS


def nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """``model`` and every model its fields contain, recursively."""
    seen: set[type[BaseModel]] = set()
    stack = [model]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        for field in current.model_fields.values():
            stack.extend(_models_in(field.annotation))


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=CONTRACT_IDS)
def test_every_contract_field_is_documented(contract: type[Contract]) -> None:
    undocumented = [
        f"{model.__name__}.{name}"
        for model in nested_models(contract)
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert undocumented == [], "give each field a docstring (use_attribute_docstrings)"
    assert (contract.__doc__ or "").strip(), f"{contract.__name__} has no docstring"


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=CONTRACT_IDS)
def test_every_contract_type_fits_the_envelope(contract: type[Contract]) -> None:
    # The JSON Schema of ``type`` is what other-language clients validate against.
    pattern = CloudEvent[contract].model_json_schema()["properties"]["type"]["pattern"]  # type: ignore[valid-type]
    assert re.search(pattern, TYPE_PREFIX + contract.routing_key)


def test_event_round_trips_through_the_envelope() -> None:
    data = BudgetExhausted(
        project_id="p1", budget=Decimal("10"), spent=Decimal("12.5"), at=datetime.now(UTC)
    )
    event = make_event(data, source="/services/billing")
    parsed = CloudEvent[BudgetExhausted].model_validate_json(event.to_json_bytes())
    assert parsed.data == data
    assert parsed.type == "prelabel.budget.exhausted.v1"
