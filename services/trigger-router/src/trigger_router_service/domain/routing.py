"""Item events as the router routes them, and what routing a batch of them did."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.contracts import ItemSnapshot
from common.envelope import CloudEvent
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import ExecutionStatus
from trigger_router_service.domain.triggers import ACTION_BY_ROUTING_KEY, Action


@dataclass(frozen=True)
class ItemEvent:
    """A parsed item event, ready to route."""

    event_id: str
    action: Action
    item: ItemSnapshot
    time: datetime


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


def item_event(event: CloudEvent[Any]) -> ItemEvent:
    """An item event envelope (already validated) as the router routes it."""
    action = ACTION_BY_ROUTING_KEY.get(event.routing_key)
    if action is None:
        raise RouterError(f"{event.type} is not an item event the router handles")
    return ItemEvent(event.id, action, event.data.item, event.time)
