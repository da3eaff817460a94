"""What the routes are given: the caller's project, the repository, settings, clients."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.auth import KeyIntrospector, project_dependency
from common.service import runtime_of
from trigger_router_service.adapters.datasets import DatasetClient
from trigger_router_service.adapters.models import ModelClient
from trigger_router_service.adapters.tasks import TaskClient
from trigger_router_service.deps import Deps, deps
from trigger_router_service.domain.errors import ConflictError, NotFoundError
from trigger_router_service.repository import Repository
from trigger_router_service.settings import Settings
from trigger_router_service.usecases.pipelines import PipelineEngine


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


def introspector(request: Request) -> KeyIntrospector:
    """The API key checker."""
    return runtime_of(request.app).deps_as(Deps).keys


def datasets(request: Request) -> DatasetClient:
    """The dataset service client."""
    return runtime_of(request.app).deps_as(Deps).datasets


def tasks(request: Request) -> TaskClient:
    """The annotation service's task client."""
    return runtime_of(request.app).deps_as(Deps).tasks


def models(request: Request) -> ModelClient:
    """Model-serving's client (what a model service's model accepts)."""
    return runtime_of(request.app).deps_as(Deps).models


def pipelines(request: Request) -> PipelineEngine:
    """The pipeline engine."""
    return runtime_of(request.app).deps_as(Deps).pipelines


Project = Annotated[str, Depends(project_dependency(introspector))]
Repo = Annotated[Repository, Depends(repo)]


async def check_service(repository: Repository, project: str, service_id: str) -> None:
    """Reject a model service that is not in the project (404: another project's too, as
    a pipeline's predict node) or is undeployed (409)."""
    status = await repository.service_in_project(project, service_id)
    if status is None:
        raise NotFoundError(f"model service {service_id} does not exist in this project")
    if status == "undeployed":
        raise ConflictError(f"model service {service_id} is undeployed")
