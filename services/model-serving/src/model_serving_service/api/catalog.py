"""Routes of the model catalog."""

from __future__ import annotations

from fastapi import APIRouter

from model_serving_service.api.dependencies import ProjectId, UseCases
from model_serving_service.api.schemas import CatalogEntryOut, InstallIn, ModelOut
from model_serving_service.catalog import CATALOG
from model_serving_service.domain.specs import SpecOverrides

router = APIRouter()


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
