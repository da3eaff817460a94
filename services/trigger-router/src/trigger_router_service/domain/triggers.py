"""Triggers: Dataloop's spec (resource, actions, mode, DQL filter, operation) and matching."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.dql import Condition, DQLError, Node, matches, parse_filter
from trigger_router_service.domain.errors import RouterError


class Action(StrEnum):
    """What happened to the resource (Dataloop's trigger actions)."""

    CREATED = "Created"
    UPDATED = "Updated"
    METADATA_UPDATED = "MetadataUpdated"
    DELETED = "Deleted"


ACTION_BY_ROUTING_KEY: dict[str, Action] = {
    "item.created.v1": Action.CREATED,
    "item.updated.v1": Action.UPDATED,
    "item.metadata_updated.v1": Action.METADATA_UPDATED,
    "item.deleted.v1": Action.DELETED,
}
"""Item event routing keys and the trigger action each one is."""

ACTIONS_BY_RESOURCE: dict[str, frozenset[Action]] = {"Item": frozenset(Action)}
"""Actions a trigger on each resource may listen to."""


class ExecutionMode(StrEnum):
    """``Once``: at most one execution per (trigger, item) ever. ``Always``: every match."""

    ONCE = "Once"
    ALWAYS = "Always"


class Operation(BaseModel):
    """What a trigger runs on a match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["predict"] = "predict"
    """Only ``predict`` for now (pipelines add more)."""
    service_id: str = Field(min_length=1, max_length=200)
    """The model service that predicts."""


class TriggerSpec(BaseModel):
    """Dataloop's trigger spec: resource, actions, mode, DQL filter and operation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource: Literal["Item"] = "Item"
    """Resource the trigger listens to."""
    actions: list[Action] = Field(default_factory=lambda: [Action.CREATED], min_length=1)
    """Actions that fire it."""
    execution_mode: ExecutionMode = ExecutionMode.ONCE
    """``Once`` or ``Always``."""
    filter: dict[str, Any] = Field(default_factory=dict)
    """DQL filter the item must match (``{}`` matches every visible file)."""
    operation: Operation
    """What runs on a match."""

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, actions: list[Action]) -> list[Action]:
        return list(dict.fromkeys(actions))


def validate_spec(spec: TriggerSpec, *, max_depth: int = 10) -> Node:
    """Check what pydantic cannot (actions allowed for the resource, the filter parses)
    and return the parsed filter. Raises :class:`RouterError` with a clear message."""
    allowed = ACTIONS_BY_RESOURCE[spec.resource]
    wrong = [a.value for a in spec.actions if a not in allowed]
    if wrong:
        raise RouterError(f"actions {wrong} are not allowed for resource {spec.resource}")
    return compile_filter(spec.filter, max_depth=max_depth)


def compile_filter(filter_: Any, *, max_depth: int = 10) -> Node:
    """Parse a trigger's filter with Dataloop's defaults (hidden items and dirs excluded)."""
    try:
        return parse_filter(filter_, max_depth=max_depth, defaults=True)
    except DQLError as exc:
        where = f" at {exc.path}" if exc.path else ""
        raise RouterError(f"invalid filter{where}: {exc.message}") from exc


@dataclass(frozen=True)
class ActiveTrigger:
    """A trigger as the router matches it: parsed once per batch."""

    id: str
    project_id: str
    service_id: str
    actions: frozenset[Action]
    mode: ExecutionMode
    filter: Node


MismatchHook = Callable[[ActiveTrigger, Condition, Any], None]


def matching_triggers(
    triggers: Iterable[ActiveTrigger],
    action: Action,
    item: Mapping[str, Any],
    *,
    on_mismatch: MismatchHook | None = None,
) -> list[ActiveTrigger]:
    """The triggers of the item's project that fire for ``action`` on ``item``.

    A filter that cannot be evaluated on the item (a type mismatch) does not match
    and is reported to ``on_mismatch``; it never raises.
    """
    project = item.get("project_id")
    fired: list[ActiveTrigger] = []
    for trigger in triggers:
        if trigger.project_id != project or action not in trigger.actions:
            continue
        hook = None
        if on_mismatch is not None:

            def hook(cond: Condition, value: Any, t: ActiveTrigger = trigger) -> None:
                on_mismatch(t, cond, value)

        if matches(trigger.filter, item, on_mismatch=hook):
            fired.append(trigger)
    return fired


class Trigger(BaseModel):
    """A trigger as the API shows it."""

    id: str
    project_id: str
    name: str
    active: bool
    status: str
    """``active`` or ``failed`` (its service went away; see ``status_reason``)."""
    status_reason: str | None = None
    spec: TriggerSpec
    created_at: datetime
    updated_at: datetime
