"""What the annotation service's routes and handlers are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass

from annotation_service.adapters.datasets import Datasets, ModelServices
from annotation_service.repository import Repository
from annotation_service.settings import Settings
from common.auth import KeyIntrospector
from common.service import dependencies


@dataclass(frozen=True, slots=True)
class Deps:
    """The annotation service's dependencies."""

    settings: Settings
    repo: Repository
    introspector: KeyIntrospector
    datasets: Datasets
    services: ModelServices | None
    """None when ``model_serving_url`` is unset (the check is skipped)."""


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
