"""What the routes are given: the caller's project and the repository."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from billing_service.deps import Deps, deps
from billing_service.repository import Repository
from billing_service.settings import Settings
from common.auth import KeyIntrospector, bearer_token, project_dependency
from common.service import runtime_of


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).introspector


async def _repo(d: Annotated[Deps, Depends(deps)]) -> Repository:
    return d.repo


def _settings(request: Request) -> Settings:
    return runtime_of(request.app).deps_as(Deps).settings


async def _admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = _settings(request).admin_key
    token = bearer_token(authorization)
    if expected is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(401, "this route needs the operator's admin key")


Project = Annotated[str, Depends(project_dependency(_introspector))]
Repo = Annotated[Repository, Depends(_repo)]
ServiceSettings = Annotated[Settings, Depends(_settings)]
Admin = Depends(_admin)
"""A route dependency: the caller holds the billing admin key (else 401)."""
