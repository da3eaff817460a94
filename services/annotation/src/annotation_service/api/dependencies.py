"""What the routes are given: the caller's project, the repository, the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from annotation_service.deps import Deps, deps
from annotation_service.repository import Repository
from annotation_service.settings import Settings
from common.auth import KeyIntrospector, project_dependency
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


Project = Annotated[str, Depends(project_dependency(introspector))]
Repo = Annotated[Repository, Depends(repo)]
ServiceSettings = Annotated[Settings, Depends(settings_of)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0)]
