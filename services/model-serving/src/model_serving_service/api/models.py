"""Routes of models: install results, bring your own, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from model_serving_service.api.dependencies import ProjectId, UseCases, read_limited
from model_serving_service.api.schemas import ModelOut
from model_serving_service.usecases.archives import parse_spec_form

router = APIRouter()


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
    data = await read_limited(archive, settings.max_archive_bytes)
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
