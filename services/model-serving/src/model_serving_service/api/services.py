"""Routes of model services: deploy, read, patch, undeploy, dead letters, predict now."""

from __future__ import annotations

import json
from typing import Annotated, Any

import filetype
from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from common.dead_letters import parse_envelope, redact
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.api.dependencies import ProjectId, UseCases, read_limited
from model_serving_service.api.schemas import (
    DeadLetterOut,
    DeployIn,
    PredictNowOut,
    QueueOut,
    ReplicaOut,
    ScalingIn,
    ServiceOut,
)
from model_serving_service.repository import Repository
from model_serving_service.repository.services import Service
from model_serving_service.usecases import ModelServing

router = APIRouter()


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
    """Requests of the service that were dead-lettered, with the reason (left in place;
    secret-named fields redacted). ``GET /dead-letters`` lists them too, with replay."""
    service = await usecases.get_service(project_id, service_id)
    out = []
    for letter in await usecases.queues.peek_dead_letters(service.id, limit):
        execution_id = item_id = None
        envelope = parse_envelope(letter.body)
        try:
            data: Any = (envelope or {}).get("data") or {}
            execution_id = data.get("execution_id")
            item_id = (data.get("item") or {}).get("id")
        except AttributeError:
            pass
        # Secret-named fields redacted, as GET /dead-letters shows them.
        body = (
            json.dumps(redact(envelope))
            if envelope is not None
            else letter.body.decode("utf-8", errors="replace")
        )
        out.append(
            DeadLetterOut(
                reason=letter.reason,
                execution_id=execution_id,
                item_id=item_id,
                body=body[:4000],
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
    data = await read_limited(file, usecases.settings.max_image_bytes)
    mimetype = filetype.guess_mime(data) or file.content_type
    result = await usecases.predict_now(project_id, service_id, data, mimetype)
    return PredictNowOut(
        model_id=result.model.id,
        model_name=result.model.name,
        model_version=result.model.version,
        annotations=result.annotations,
        latency_ms=round(result.seconds * 1000, 2),
    )
