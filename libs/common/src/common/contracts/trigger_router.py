"""Contracts published by the trigger-router."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.contracts.dataset import ItemSnapshot
from common.topology import TRIGGER_ROUTER

Way = Literal["trigger", "batch", "pipeline"]
"""Which of the three ways to pre-label created an execution."""


class Origin(BaseModel):
    """Where an execution came from: a trigger on a model service, a batch (predict on a
    selection) or a pipeline's predict node. Carried by the predict request and echoed
    by its outcome, so annotations record which way produced them."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    way: Way
    """``trigger``, ``batch`` or ``pipeline``."""
    id: str
    """The trigger, batch or pipeline id."""
    pipeline_execution_id: str | None = None
    """The pipeline execution (one item's way through the graph), for ``pipeline``."""
    node_id: str | None = None
    """The pipeline node that created the execution, for ``pipeline``."""


class PredictRequest(Contract):
    """Work for a model service: run its model on one item (one execution)."""

    routing_key = "predict_item.v1"
    producer = TRIGGER_ROUTER
    kind = "command"

    execution_id: str
    """The execution this request belongs to; predict outcomes are idempotent on it."""
    service_id: str
    """Model service that should run it."""
    project_id: str
    """Owning project."""
    item: ItemSnapshot
    """The item to predict on (its blob key is in ``metadata.system``)."""
    trigger_id: str | None = None
    """Trigger that created the execution, if any."""
    attempt: int = Field(default=1, ge=1)
    """1 for the first try, higher for reruns."""
    origin: Origin | None = None
    """Which way created the execution (absent from older routers)."""


class ServiceScaled(Contract):
    """The autoscaler changed a model service's replica count."""

    routing_key = "service.scaled.v1"
    producer = TRIGGER_ROUTER

    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    previous_replicas: int = Field(ge=0)
    """Replicas before the change."""
    desired_replicas: int = Field(ge=0)
    """Replicas after the change."""
    load: int = Field(ge=0)
    """Ready + unacknowledged messages that drove the decision."""
    reason: str
    """Why: ``work-arrived``, ``queue-depth``, ``cooldown``, ``budget-exhausted`` ..."""
