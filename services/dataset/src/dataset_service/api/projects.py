"""Projects and API keys (admin key), and ``GET /whoami`` (other services check keys here)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dataset_service.api.dependencies import Project_, Repo, admin
from dataset_service.api.schemas import KeyIn, ProjectIn, WhoAmI
from dataset_service.repository import ApiKey, Project

router = APIRouter()


@router.post("/projects", status_code=201, dependencies=[Depends(admin)], tags=["admin"])
async def create_project(body: ProjectIn, repository: Repo) -> Project:
    """Create a project (admin key)."""
    return await repository.create_project(body.name)


@router.post(
    "/projects/{project}/api-keys", status_code=201, dependencies=[Depends(admin)], tags=["admin"]
)
async def create_api_key(project: str, body: KeyIn, repository: Repo) -> ApiKey:
    """Create an API key for a project (admin key); the key is shown only in this answer."""
    return await repository.create_api_key(project, body.name)


@router.get("/whoami", tags=["auth"])
async def whoami(project: Project_) -> WhoAmI:
    """Which project the caller's key belongs to (other services check keys here)."""
    return WhoAmI(project_id=project)
