"""Contracts published by the trigger-router."""

from __future__ import annotations

from pydantic import Field

from common.contracts.base import Contract
from common.contracts.dataset import ItemSnapshot
from common.topology import TRIGGER_ROUTER


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
