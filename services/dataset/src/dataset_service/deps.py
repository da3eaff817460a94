"""What the dataset service's routes and handlers are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.service import dependencies
from dataset_service.repository import Repository
from dataset_service.settings import Settings
from dataset_service.usecases.items import ItemStore
from dataset_service.usecases.thumbnails import Thumbnails


@dataclass(frozen=True, slots=True)
class Deps:
    """The dataset service's dependencies."""

    settings: Settings
    s3: Any
    """aiobotocore's S3 client (untyped)."""
    repo: Repository
    store: ItemStore
    thumbnails: Thumbnails


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
