"""HTTP API of model-serving: catalog, models (install, bring your own), model services
(deploy, get, patch, undeploy) and a synchronous predict for trying a model.

Every route needs a project API key (``Authorization: Bearer``), checked by the dataset
service; every lookup is scoped to that key's project, so other projects' ids answer 404.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import filetype
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from common.auth import KeyIntrospector, project_dependency
from common.contracts import PredictedAnnotation
from common.service import runtime_of
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.catalog import CATALOG, CatalogModel
from model_serving_service.deps import Deps, deps
from model_serving_service.domain.errors import TooLargeError
from model_serving_service.domain.specs import AdapterType, InputType, ModelSpec, SpecOverrides
from model_serving_service.repository import Repository, Service
from model_serving_service.usecases import ModelServing, parse_spec_form

router = APIRouter()


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).auth


async def _usecases(d: Annotated[Deps, Depends(deps)]) -> ModelServing:
    return d.usecases


ProjectId = Annotated[str, Depends(project_dependency(_introspector))]
UseCases = Annotated[ModelServing, Depends(_usecases)]


# --------------------------------------------------------------------------- schemas


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


# --------------------------------------------------------------------------- catalog


@router.get("/catalog", tags=["catalog"])
async def list_catalog(_: ProjectId) -> list[CatalogEntryOut]:
    """The built-in models a project can install."""
    return [CatalogEntryOut.of(entry) for entry in CATALOG.values()]


@router.post("/catalog/{name}/install", status_code=201, tags=["catalog"])
async def install(
    name: str, project_id: ProjectId, usecases: UseCases, body: InstallIn | None = None
) -> ModelOut:
    """Copy a catalog model into the project, with optional label map, threshold,
    batch size and timeout."""
    options = body or InstallIn()
    overrides = SpecOverrides.model_validate(options.model_dump(exclude={"name"}))
    model = await usecases.install(project_id, name, name=options.name, overrides=overrides)
    return ModelOut.model_validate(model)


# --------------------------------------------------------------------------- models


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"upload is larger than {limit} bytes")
    return data


@router.post("/models", status_code=201, tags=["models"])
async def register_model(
    project_id: ProjectId,
    usecases: UseCases,
    archive: Annotated[
        UploadFile,
        File(
            description="A .tar, .tar.gz or .zip of the Triton model directory (config.pbtxt + version folders)."
        ),
    ],
    spec: Annotated[
        str,
        Form(
            description="JSON: input_type, input, adapter, labels, label_map, confidence_threshold, max_batch_size, timeout_seconds."
        ),
    ],
    name: Annotated[str, Form(min_length=1, max_length=100)],
    version: Annotated[str, Form(min_length=1, max_length=100)] = "1",
) -> ModelOut:
    """Bring your own model: register a Triton model directory plus its output adapter.

    The configuration is validated before anything is written: ``config.pbtxt`` parses,
    the spec's input and outputs are declared with fitting types and shapes, labels
    match the classification width, the backend's files are present.
    """
    settings = usecases.settings
    data = await _read_limited(archive, settings.max_archive_bytes)
    model = await usecases.register(
        project_id, name=name, version=version, archive=data, spec_doc=parse_spec_form(spec)
    )
    return ModelOut.model_validate(model)


@router.get("/models", tags=["models"])
async def list_models(project_id: ProjectId, usecases: UseCases) -> list[ModelOut]:
    """The project's models."""
    return [ModelOut.model_validate(m) for m in await usecases.repo.list_models(project_id)]


@router.get("/models/{model_id}", tags=["models"])
async def get_model(model_id: str, project_id: ProjectId, usecases: UseCases) -> ModelOut:
    """One model."""
    return ModelOut.model_validate(await usecases.get_model(project_id, model_id))


@router.delete("/models/{model_id}", status_code=204, tags=["models"])
async def delete_model(model_id: str, project_id: ProjectId, usecases: UseCases) -> None:
    """Remove a model no service uses (409 while one does)."""
    await usecases.delete_model(project_id, model_id)


# --------------------------------------------------------------------------- services


async def _service_out(usecases: ModelServing, service: Service) -> ServiceOut:
    out = ServiceOut.of(service)
    queues: PredictQueues = usecases.queues
    name = queues.queue_name(service.id)
    depth = await queues.depth(name)
    dead = await queues.depth(queues.topology.dead_letter_queue(name))
    out.queue = QueueOut(
        name=name,
        messages=depth.messages if depth else None,
        consumers=depth.consumers if depth else None,
        dead_letters=dead.messages if dead else None,
    )
    repo: Repository = usecases.repo
    out.replicas = [ReplicaOut.model_validate(r) for r in await repo.active_replicas(service.id)]
    return out


@router.post("/services", status_code=201, tags=["services"])
async def deploy(body: DeployIn, project_id: ProjectId, usecases: UseCases) -> ServiceOut:
    """Deploy a model as a model service (status ``deploying``, then ``ready`` or
    ``failed`` with Triton's reason once the model was loaded once)."""
    scaling = body.model_dump(exclude={"model_id", "name"}, exclude_none=True)
    service = await usecases.deploy(project_id, body.model_id, body.name, scaling)
    return await _service_out(usecases, service)


@router.get("/services", tags=["services"])
async def list_services(project_id: ProjectId, usecases: UseCases) -> list[ServiceOut]:
    """The project's model services."""
    return [ServiceOut.of(s) for s in await usecases.repo.list_services(project_id)]


@router.get("/services/{service_id}", tags=["services"])
async def get_service(service_id: str, project_id: ProjectId, usecases: UseCases) -> ServiceOut:
    """One model service with its queue depth and live replicas."""
    return await _service_out(usecases, await usecases.get_service(project_id, service_id))


@router.patch("/services/{service_id}", tags=["services"])
async def patch_service(
    service_id: str, body: ScalingIn, project_id: ProjectId, usecases: UseCases
) -> ServiceOut:
    """Change scaling settings."""
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise HTTPException(422, "nothing to change")
    service = await usecases.patch(project_id, service_id, changes)
    return await _service_out(usecases, service)


@router.delete("/services/{service_id}", status_code=202, tags=["services"])
async def undeploy(service_id: str, project_id: ProjectId, usecases: UseCases) -> ServiceOut:
    """Undeploy: queued requests are served first (up to the drain limit), then the
    replicas stop, leftovers fail with a reason and the queue is removed."""
    return ServiceOut.of(await usecases.undeploy(project_id, service_id))


@router.get("/services/{service_id}/dead-letters", tags=["services"])
async def dead_letters(
    service_id: str,
    project_id: ProjectId,
    usecases: UseCases,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[DeadLetterOut]:
    """Requests of the service that were dead-lettered, with the reason (left in place)."""
    service = await usecases.get_service(project_id, service_id)
    out = []
    for letter in await usecases.queues.peek_dead_letters(service.id, limit):
        execution_id = item_id = None
        try:
            data: Any = json.loads(letter.body).get("data") or {}
            execution_id = data.get("execution_id")
            item_id = (data.get("item") or {}).get("id")
        except (ValueError, AttributeError):
            pass
        out.append(
            DeadLetterOut(
                reason=letter.reason,
                execution_id=execution_id,
                item_id=item_id,
                body=letter.body.decode("utf-8", errors="replace")[:4000],
            )
        )
    return out


@router.post("/services/{service_id}/predict-now", tags=["services"])
async def predict_now(
    service_id: str,
    project_id: ProjectId,
    usecases: UseCases,
    file: Annotated[UploadFile, File(description="One image (or text for text models).")],
) -> PredictNowOut:
    """Run the service's model on one uploaded file and answer with the annotations."""
    data = await _read_limited(file, usecases.settings.max_image_bytes)
    mimetype = filetype.guess_mime(data) or file.content_type
    result = await usecases.predict_now(project_id, service_id, data, mimetype)
    return PredictNowOut(
        model_id=result.model.id,
        model_name=result.model.name,
        model_version=result.model.version,
        annotations=result.annotations,
        latency_ms=round(result.seconds * 1000, 2),
    )
