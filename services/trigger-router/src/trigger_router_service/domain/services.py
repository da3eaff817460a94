"""Model services as the router knows them (settings from model-serving, scaling state)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ModelService(BaseModel):
    """The router's view of a model service: settings from model-serving, scaling state."""

    service_id: str
    project_id: str
    model_id: str
    status: str
    min_replicas: int
    max_replicas: int
    queue_per_replica: int
    cooldown_seconds: float
    concurrency: int
    instance_type: str
    error: str | None
    desired_replicas: int
    actual_replicas: int
    running_replicas: int
    """Replicas that reported ``replica.started.v1`` and not yet ``replica.stopped.v1``."""
    last_active_at: datetime | None


def is_newer(incoming: datetime, stored: datetime | None) -> bool:
    """Last writer by event time: an event older than what is stored changes nothing."""
    return stored is None or incoming >= stored
