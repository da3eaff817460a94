"""What the routes are given: the caller's project, the repository, the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from annotation_service.adapters.datasets import Datasets, ModelServices
from annotation_service.deps import Deps, deps
from annotation_service.repository import Repository
from annotation_service.settings import Settings
from common.auth import KeyIntrospector, bearer_token, project_dependency
from common.service import runtime_of


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


def introspector(request: Request) -> KeyIntrospector:
    """The API key checker."""
    return runtime_of(request.app).deps_as(Deps).introspector


def datasets_of(request: Request) -> Datasets:
    """The dataset service's client (is a dataset the caller's?)."""
    return runtime_of(request.app).deps_as(Deps).datasets


def services_of(request: Request) -> ModelServices | None:
    """Model-serving's client (is a model service the caller's?), None when not configured."""
    return runtime_of(request.app).deps_as(Deps).services


def caller_key(authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's API key (checked by :data:`Project`), to ask other services with."""
    return bearer_token(authorization)


Project = Annotated[str, Depends(project_dependency(introspector))]
CallerKey = Annotated[str, Depends(caller_key)]
DatasetClient = Annotated[Datasets, Depends(datasets_of)]
ServiceClient = Annotated[ModelServices | None, Depends(services_of)]
Repo = Annotated[Repository, Depends(repo)]
ServiceSettings = Annotated[Settings, Depends(settings_of)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0)]
