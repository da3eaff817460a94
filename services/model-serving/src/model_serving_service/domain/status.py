"""Statuses of a model service and the moves between them."""

from __future__ import annotations

from typing import Literal

ServiceStatus = Literal["deploying", "ready", "failed", "undeploying", "undeployed"]

TRANSITIONS: dict[str, frozenset[str]] = {
    "deploying": frozenset({"ready", "failed", "undeploying"}),
    "ready": frozenset({"failed", "undeploying"}),
    "failed": frozenset({"ready", "undeploying"}),
    "undeploying": frozenset({"undeployed"}),
    "undeployed": frozenset(),
}


def can_transition(current: str, new: str) -> bool:
    """Whether a service may move from ``current`` to ``new`` status."""
    return new in TRANSITIONS.get(current, frozenset())
