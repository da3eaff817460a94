"""Item events as the router routes them, the decisions routing takes on them, and what
routing a batch of them did."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.contracts import ItemCreated, ItemSnapshot, inline_blob_size
from common.dql import Node
from common.envelope import CloudEvent
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import ExecutionStatus, NewExecution, initial_status
from trigger_router_service.domain.triggers import (
    ACTION_BY_ROUTING_KEY,
    Action,
    ActiveTrigger,
    ExecutionMode,
    MismatchHook,
    compile_filter,
    matching_triggers,
)


@dataclass(frozen=True)
class ItemEvent:
    """A parsed item event, ready to route."""

    event_id: str
    action: Action
    item: ItemSnapshot
    time: datetime
    blob_base64: str | None = None
    """The item's blob as the event carried it inline (``item.created.v1``, small blobs),
    within the router's threshold; passed on in the predict requests it creates."""


@dataclass
class RouteOutcome:
    """What routing one batch did."""

    duplicates: set[str] = field(default_factory=set)
    """Event ids already routed before (redeliveries)."""
    created: dict[ExecutionStatus, int] = field(default_factory=dict)
    """New executions by initial status."""
    matched: int = 0
    """(trigger, event) matches, including those the constraints turned away."""
    matched_events: set[str] = field(default_factory=set)
    """Event ids that matched at least one trigger."""
    woken: set[str] = field(default_factory=set)
    """Services asked to wake (they were at 0 replicas)."""
    failed_triggers: list[str] = field(default_factory=list)
    pipeline_runs: int = 0
    """Pipeline executions created (items that entered a running pipeline)."""


@dataclass(frozen=True)
class TriggerRow:
    """A stored active trigger with its service's status, before its filter is parsed."""

    id: str
    project_id: str
    service_id: str
    actions: tuple[str, ...]
    execution_mode: str
    filter: Any
    updated_at: datetime
    service_status: str | None
    """``None`` when the router never heard of the service."""


def item_event(event: CloudEvent[Any], inline_blob_max_bytes: int = 0) -> ItemEvent:
    """An item event envelope (already validated) as the router routes it; an inline blob
    longer than ``inline_blob_max_bytes`` is dropped (0: every one; the worker reads S3)."""
    action = ACTION_BY_ROUTING_KEY.get(event.routing_key)
    if action is None:
        raise RouterError(f"{event.type} is not an item event the router handles")
    blob = event.data.blob_base64 if isinstance(event.data, ItemCreated) else None
    if blob is not None and inline_blob_size(blob) > inline_blob_max_bytes:
        blob = None
    return ItemEvent(event.id, action, event.data.item, event.time, blob)


def fresh_events(
    events: Sequence[ItemEvent], fresh_ids: set[str]
) -> tuple[list[ItemEvent], set[str]]:
    """Split a batch into the events to route (claimed now, each id once) and the ids of
    duplicates (claimed before, or repeated within the batch)."""
    unclaimed = set(fresh_ids)
    todo: list[ItemEvent] = []
    duplicates: set[str] = set()
    for event in events:
        if event.event_id in unclaimed:
            unclaimed.discard(event.event_id)
            todo.append(event)
        else:
            duplicates.add(event.event_id)
    return todo, duplicates


class FilterCache:
    """Parsed trigger filters by (trigger id, updated_at): a changed trigger has a new key,
    so edits take effect on the next event without a restart."""

    def __init__(self, max_depth: int = 10, size: int = 10_000) -> None:
        self._max_depth = max_depth
        self._size = size
        self._nodes: dict[tuple[str, datetime], Node] = {}

    def compiled(self, key_id: str, updated_at: datetime, filter_: Any) -> Node:
        """The parsed filter (parsed once per key)."""
        key = (key_id, updated_at)
        node = self._nodes.get(key)
        if node is None:
            if len(self._nodes) > self._size:
                self._nodes.clear()
            node = compile_filter(filter_, max_depth=self._max_depth)
            self._nodes[key] = node
        return node


def split_triggers(
    rows: Iterable[TriggerRow], filters: FilterCache
) -> tuple[list[ActiveTrigger], dict[str, str]]:
    """The triggers that can fire, and the services that went away (id -> ``undeployed`` or
    ``not found``) whose triggers must fail instead."""
    triggers: list[ActiveTrigger] = []
    gone: dict[str, str] = {}
    for r in rows:
        if r.service_status in (None, "undeployed"):
            gone[r.service_id] = "undeployed" if r.service_status == "undeployed" else "not found"
            continue
        triggers.append(
            ActiveTrigger(
                id=r.id,
                project_id=r.project_id,
                service_id=r.service_id,
                actions=frozenset(Action(a) for a in r.actions),
                mode=ExecutionMode(r.execution_mode),
                filter=filters.compiled(r.id, r.updated_at, r.filter),
            )
        )
    return triggers, gone


def trigger_executions(
    events: Iterable[ItemEvent],
    triggers: Sequence[ActiveTrigger],
    exhausted: set[str],
    state: dict[str, tuple[int, int]],
    outcome: RouteOutcome,
    *,
    on_mismatch: MismatchHook | None = None,
) -> list[NewExecution]:
    """One new execution per (event, matching trigger): held for a project out of budget,
    flagged cold when its service runs no replica. Counts the matches in ``outcome``."""
    new: list[NewExecution] = []
    for event in events:
        document = event.item.as_filter_document()
        for trigger in matching_triggers(triggers, event.action, document, on_mismatch=on_mismatch):
            outcome.matched += 1
            outcome.matched_events.add(event.event_id)
            new.append(
                NewExecution(
                    project_id=trigger.project_id,
                    service_id=trigger.service_id,
                    item=event.item,
                    status=initial_status(trigger.project_id in exhausted),
                    cold_start=state.get(trigger.service_id, (0, 0))[1] == 0,
                    trigger_id=trigger.id,
                    event_id=event.event_id,
                    action=event.action.value,
                    once=trigger.mode is ExecutionMode.ONCE,
                    blob_base64=event.blob_base64,
                )
            )
    return new
