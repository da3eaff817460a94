"""HTTP API of the dataset service: thin routes over the use cases and the repository.

Every route but the admin ones needs a project API key (``Authorization: Bearer``);
every lookup is scoped to that key's project, so another project's ids answer 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request

from common.dead_letters import MessageProject, dead_letters_router, envelope_project
from common.service import runtime_of
from dataset_service.api import datasets, items, projects, queries, upload
from dataset_service.api.dependencies import project_id
from dataset_service.deps import Deps


def _message_project(request: Request) -> MessageProject:
    """An ingest command belongs to the project of the API key it carries (no valid key:
    nobody's); any other message to the project its envelope names."""
    repo = runtime_of(request.app).deps_as(Deps).repo

    async def project_of(envelope: Mapping[str, Any]) -> str | None:
        data = envelope.get("data")
        if isinstance(data, dict) and "api_key" in data:
            key = data["api_key"]
            return await repo.project_for_key(key) if isinstance(key, str) and key else None
        return envelope_project(envelope)

    return project_of


router = APIRouter()
router.include_router(projects.router)
router.include_router(datasets.router)
router.include_router(upload.router)
router.include_router(queries.router)
router.include_router(items.router)
router.include_router(dead_letters_router(project_id, project_of=_message_project))
