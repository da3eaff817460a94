"""What the routes are given: the caller's project, the repository, the item store and
the settings."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from common.auth import bearer_token
from common.service import runtime_of
from dataset_service.deps import Deps, deps
from dataset_service.repository import Repository
from dataset_service.settings import Settings
from dataset_service.usecases.items import ItemStore
from dataset_service.usecases.thumbnails import Thumbnails


async def repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    """The service's repository."""
    return d.repo


async def store(d: Annotated[Deps, Depends(deps)]) -> ItemStore:
    """The service's item store."""
    return d.store


async def thumbnails(d: Annotated[Deps, Depends(deps)]) -> Thumbnails:
    """The service's thumbnail maker."""
    return d.thumbnails


def settings_of(request: Request) -> Settings:
    """The service's settings."""
    return runtime_of(request.app).deps_as(Deps).settings


async def project_id(
    repository: Annotated[Repository, Depends(repo)],
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """The project of the caller's API key."""
    project = await repository.project_for_key(bearer_token(authorization))
    if project is None:
        raise HTTPException(401, "invalid API key")
    return project


async def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Only the admin key (from settings) passes."""
    expected = settings_of(request).admin_key
    if expected is None:
        raise HTTPException(403, "admin routes are disabled: DATASET_ADMIN_KEY is not set")
    if not secrets.compare_digest(bearer_token(authorization), expected.get_secret_value()):
        raise HTTPException(401, "invalid admin key")


Project_ = Annotated[str, Depends(project_id)]
Repo = Annotated[Repository, Depends(repo)]
Store = Annotated[ItemStore, Depends(store)]
Thumbs = Annotated[Thumbnails, Depends(thumbnails)]
