"""What the routes are given: the caller's project and the repository."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from billing_service.deps import Deps, deps
from billing_service.repository import Repository
from common.auth import KeyIntrospector, project_dependency
from common.service import runtime_of


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).introspector


async def _repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    return d.repo


Project = Annotated[str, Depends(project_dependency(_introspector))]
Repo = Annotated[Repository, Depends(_repo)]
