"""What the routes are given: the caller's project, the use cases, bounded uploads."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile

from common.auth import KeyIntrospector, project_dependency
from common.service import runtime_of
from model_serving_service.deps import Deps, deps
from model_serving_service.domain.errors import TooLargeError
from model_serving_service.usecases import ModelServing


def _introspector(request: Request) -> KeyIntrospector:
    return runtime_of(request.app).deps_as(Deps).auth


async def _usecases(d: Annotated[Deps, Depends(deps)]) -> ModelServing:
    return d.usecases


ProjectId = Annotated[str, Depends(project_dependency(_introspector))]
UseCases = Annotated[ModelServing, Depends(_usecases)]


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes; :class:`TooLargeError` when there are more than ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"upload is larger than {limit} bytes")
    return data
