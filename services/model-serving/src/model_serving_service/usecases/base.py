"""What every use case module shares: the clients they orchestrate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.adapters.triton import ModelRepository, TritonInference
from model_serving_service.repository import Repository
from model_serving_service.repository.holds import ModelHolds
from model_serving_service.settings import Settings


@dataclass
class UseCaseBase:
    """The repository, Triton and the broker the use cases orchestrate."""

    settings: Settings
    repo: Repository
    files: ModelRepository
    holds: ModelHolds
    inference: TritonInference
    queues: PredictQueues
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _busy: set[str] = field(default_factory=set)
