"""What the trigger-router's routes are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass

from common.auth import KeyIntrospector
from common.consumer import BatchConsumer
from common.service import dependencies
from trigger_router_service.adapters.datasets import DatasetClient
from trigger_router_service.adapters.models import ModelClient
from trigger_router_service.adapters.tasks import TaskClient
from trigger_router_service.repository import Repository
from trigger_router_service.settings import Settings
from trigger_router_service.usecases.autoscaling import Autoscaler
from trigger_router_service.usecases.pipelines import PipelineEngine


@dataclass(frozen=True, slots=True)
class Deps:
    """The trigger-router's dependencies."""

    settings: Settings
    repo: Repository
    keys: KeyIntrospector
    datasets: DatasetClient
    tasks: TaskClient
    """The annotation service's task API (pipelines' task nodes)."""
    models: ModelClient
    """Model-serving's API (pipelines' predict nodes: what their models accept)."""
    pipelines: PipelineEngine
    item_consumer: BatchConsumer
    """Consumes the item events (``handlers.consume_item_events``)."""
    autoscaler: Autoscaler | None
    """A candidate for the autoscaler's leadership (``None`` when it is disabled)."""


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
