"""Contracts published by model-serving."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.contracts.trigger_router import Origin
from common.topology import MODEL_SERVING

AnnotationType = Literal["box", "polygon", "point", "classification", "segmentation", "text"]


class ModelRef(BaseModel):
    """Which model made a prediction."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    name: str
    """Model name."""
    model_id: str
    """Model id in the project."""
    version: str
    """Model version."""


class PredictedAnnotation(BaseModel):
    """One annotation produced by a model's output adapter."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    type: AnnotationType
    """Annotation geometry type."""
    label: str
    """Label after the label map."""
    coordinates: Any = None
    """Geometry: box ``[[x1, y1], [x2, y2]]``, polygon ``[[x, y], ...]``, ``None`` for classes;
    a text line's polygon (OCR: its quadrilateral), a box or ``None``."""
    confidence: float = Field(ge=0.0, le=1.0)
    """Model confidence."""
    text: str | None = None
    """Transcription, for ``text`` annotations."""


class PredictionCompleted(Contract):
    """A model service predicted on an item."""

    routing_key = "prediction.completed.v1"
    producer = MODEL_SERVING

    execution_id: str
    """Execution this outcome closes."""
    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    dataset_id: str
    """Item's dataset."""
    item_id: str
    """Item predicted on."""
    replica_id: str
    """Replica that ran it."""
    model: ModelRef
    """Model that ran."""
    annotations: list[PredictedAnnotation] = Field(default_factory=list)
    """The predictions, after label map and confidence threshold."""
    started_at: datetime
    """When the replica started this request."""
    finished_at: datetime
    """When the outcome was ready."""
    origin: Origin | None = None
    """The request's origin, echoed (absent when the request carried none)."""
    attempt: int | None = Field(default=None, ge=1)
    """The attempt of the request this answers, echoed (absent from older workers). The
    annotation service stores nothing of a prediction whose attempt was cancelled
    (``execution.cancelled.v1``); a prediction without it counts as cancelled when its
    execution was."""


class StartedExecution(BaseModel):
    """One predict request a replica started on."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    execution_id: str
    """The request's execution."""
    attempt: int = Field(default=1, ge=1)
    """The request's attempt."""


class PredictionStarted(Contract):
    """A replica took a batch of predict requests off its queue and is working on them.

    One event per batch a worker takes (not one per request), written to the worker's
    outbox before the model runs (while it is still loading, on a cold start). Requests
    of executions already cancelled are left out: they are skipped, never started.

    The trigger-router moves each named execution to ``in-progress`` (with
    ``started_at`` and ``replica_id``) only from ``queued`` or ``waiting-for-budget`` and
    only while the named attempt is its current one: a started event that arrives after
    the outcome, after a cancel, or after the next attempt was scheduled changes nothing,
    and a redelivery changes nothing twice.
    """

    routing_key = "prediction.started.v1"
    producer = MODEL_SERVING

    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    replica_id: str
    """Replica that took the requests."""
    started_at: datetime
    """When the replica took them (received the first of the batch)."""
    executions: list[StartedExecution] = Field(min_length=1)
    """The requests started on, at most one batch."""


class PredictionFailed(Contract):
    """A model service could not predict on an item."""

    routing_key = "prediction.failed.v1"
    producer = MODEL_SERVING

    execution_id: str
    """Execution this outcome closes."""
    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    item_id: str
    """Item."""
    replica_id: str | None = None
    """Replica that tried, if any."""
    reason: str
    """What went wrong, for people."""
    retryable: bool = False
    """Whether a rerun may succeed (Triton down) or not (wrong input type)."""


class ReplicaStarted(Contract):
    """A model-serving replica started and loaded its model: billing starts here."""

    routing_key = "replica.started.v1"
    producer = MODEL_SERVING

    replica_id: str
    """Unique replica id."""
    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    instance_type: str = "cpu-small"
    """Instance type (prices per replica-second)."""
    started_at: datetime
    """When it started (metering uses this, not arrival time)."""


class ReplicaStopped(Contract):
    """A model-serving replica stopped: billing stops here."""

    routing_key = "replica.stopped.v1"
    producer = MODEL_SERVING

    replica_id: str
    """Replica id."""
    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    instance_type: str = "cpu-small"
    """Instance type."""
    started_at: datetime | None = None
    """When it started, if known."""
    stopped_at: datetime
    """When it stopped."""


class ServiceDeployed(Contract):
    """A model service was deployed or its scaling settings changed.

    The trigger-router keeps its own copy of every service's scaling settings
    from these events (it never reads model-serving's tables).
    """

    routing_key = "service.deployed.v1"
    producer = MODEL_SERVING

    service_id: str
    """Model service id; its work queue is ``predict.<service_id>``."""
    project_id: str
    """Owning project."""
    model_id: str
    """Model it serves."""
    status: Literal["deploying", "ready", "failed"]
    """Deployment status."""
    min_replicas: int = Field(default=0, ge=0)
    """Replicas kept running with no load."""
    max_replicas: int = Field(default=1, ge=0)
    """Upper bound of replicas."""
    queue_per_replica: int = Field(default=10, ge=1)
    """Load (ready + unacked messages) one replica is sized for."""
    cooldown_seconds: float = Field(default=60, ge=0)
    """Seconds without load before scaling down."""
    concurrency: int = Field(default=4, ge=1)
    """Prefetch of one replica."""
    instance_type: str = "cpu-small"
    """Instance type (billing rate)."""
    error: str | None = None
    """Why the deployment failed, if it did."""


class ServiceUndeployed(Contract):
    """A model service was removed (after draining); its queue is gone."""

    routing_key = "service.undeployed.v1"
    producer = MODEL_SERVING

    service_id: str
    """Model service id."""
    project_id: str
    """Owning project."""
