"""HTTP API of the dataset service: thin routes over the use cases and the repository.

Every route but the admin ones needs a project API key (``Authorization: Bearer``);
every lookup is scoped to that key's project, so another project's ids answer 404.
"""

from __future__ import annotations

from fastapi import APIRouter

from dataset_service.api import datasets, items, projects, queries, upload

router = APIRouter()
router.include_router(projects.router)
router.include_router(datasets.router)
router.include_router(upload.router)
router.include_router(queries.router)
router.include_router(items.router)
