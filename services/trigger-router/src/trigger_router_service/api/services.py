"""Model service routes: the router's view of them, with replica counts."""

from __future__ import annotations

from fastapi import APIRouter

from trigger_router_service.api.dependencies import Project, Repo
from trigger_router_service.domain.errors import NotFoundError
from trigger_router_service.domain.services import ModelService

router = APIRouter()


@router.get("/services", tags=["services"])
async def list_services(project: Project, repository: Repo) -> list[ModelService]:
    """The project's model services as the router knows them, with replica counts."""
    return await repository.list_services(project)


@router.get("/services/{service_id}", tags=["services"])
async def get_service(service_id: str, project: Project, repository: Repo) -> ModelService:
    """One model service."""
    found = await repository.list_services(project, service_id)
    if not found:
        raise NotFoundError(f"model service {service_id} not found")
    return found[0]
