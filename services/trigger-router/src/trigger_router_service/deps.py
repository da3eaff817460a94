"""What the trigger-router's routes are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass

from common.auth import KeyIntrospector
from common.service import dependencies
from trigger_router_service.autoscaler import Autoscaler
from trigger_router_service.datasets import DatasetClient
from trigger_router_service.repository import Repository
from trigger_router_service.routing import ItemEventConsumer
from trigger_router_service.settings import Settings


@dataclass(frozen=True, slots=True)
class Deps:
    """The trigger-router's dependencies."""

    settings: Settings
    repo: Repository
    keys: KeyIntrospector
    datasets: DatasetClient
    item_consumer: ItemEventConsumer
    autoscaler: Autoscaler | None
    """A candidate for the autoscaler's leadership (``None`` when it is disabled)."""


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
