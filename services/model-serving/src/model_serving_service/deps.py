"""What model-serving's routes are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.auth import KeyIntrospector
from common.service import dependencies
from model_serving_service.adapters.triton import TritonControl
from model_serving_service.repository import Repository
from model_serving_service.settings import Settings
from model_serving_service.usecases import ModelServing


@dataclass(frozen=True, slots=True)
class Deps:
    """model-serving's dependencies."""

    settings: Settings
    triton: TritonControl
    s3: Any
    """aiobotocore's S3 client (untyped)."""
    auth: KeyIntrospector
    usecases: ModelServing
    repo: Repository


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
