"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.contracts import PredictedAnnotation
from model_serving_service.catalog import CatalogModel
from model_serving_service.domain.specs import AdapterType, InputType, ModelSpec, SpecOverrides
from model_serving_service.repository.services import Service


class CatalogEntryOut(BaseModel):
    """A catalog model."""

    name: str
    version: str
    description: str
    input_type: InputType
    adapter: AdapterType
    labels: list[str]
    max_batch_size: int
    confidence_threshold: float
    timeout_seconds: float

    @classmethod
    def of(cls, entry: CatalogModel) -> CatalogEntryOut:
        """From a catalog entry."""
        spec = entry.spec
        return cls(
            name=entry.name,
            version=entry.version,
            description=entry.description,
            input_type=spec.input_type,
            adapter=spec.adapter.type,
            labels=spec.labels,
            max_batch_size=spec.max_batch_size,
            confidence_threshold=spec.confidence_threshold,
            timeout_seconds=spec.timeout_seconds,
        )


class InstallIn(SpecOverrides):
    """Options of a catalog install (all optional)."""

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Model name in the project (default: the catalog name).",
    )


class ModelOut(BaseModel):
    """A model of the project."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    version: str
    source: str
    catalog_name: str | None
    triton_name: str
    spec: ModelSpec
    created_at: datetime


class ScalingIn(BaseModel):
    """Scaling settings; unset fields keep their defaults (or current values on PATCH)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)
    queue_per_replica: int | None = Field(default=None, ge=1)
    cooldown_seconds: float | None = Field(default=None, ge=0)
    concurrency: int | None = Field(default=None, ge=1)
    drain_seconds: float | None = Field(default=None, ge=0)
    instance_type: str | None = None


class DeployIn(ScalingIn):
    """A new model service."""

    model_id: str
    name: str | None = Field(default=None, min_length=1, max_length=200)


class QueueOut(BaseModel):
    """The service's work queue right now."""

    name: str
    messages: int | None
    consumers: int | None
    dead_letters: int | None


class ReplicaOut(BaseModel):
    """A replica (predict worker) of the service."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    state: str
    host: str | None
    pid: int | None
    started_at: datetime
    ready_at: datetime | None
    seen_at: datetime


class ServiceOut(BaseModel):
    """A model service."""

    id: str
    name: str
    model_id: str
    status: str
    error: str | None
    min_replicas: int
    max_replicas: int
    queue_per_replica: int
    cooldown_seconds: float
    concurrency: int
    drain_seconds: float
    instance_type: str
    created_at: datetime
    updated_at: datetime
    queue: QueueOut | None = None
    replicas: list[ReplicaOut] | None = None

    @classmethod
    def of(cls, service: Service) -> ServiceOut:
        """From a service (without live queue and replica facts)."""
        return cls(
            id=service.id,
            name=service.name,
            model_id=service.model_id,
            status=service.status,
            error=service.error,
            created_at=service.created_at,
            updated_at=service.updated_at,
            **service.scaling.model_dump(),
        )


class DeadLetterOut(BaseModel):
    """A request of the service that went to its dead-letter queue."""

    reason: str | None
    execution_id: str | None
    item_id: str | None
    body: str


class PredictNowOut(BaseModel):
    """Result of a synchronous prediction."""

    model_id: str
    model_name: str
    model_version: str
    annotations: list[PredictedAnnotation]
    latency_ms: float
