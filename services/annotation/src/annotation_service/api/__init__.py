"""HTTP API of the annotation service: annotations, labeling tasks, review, export.

Every route needs a project API key (``Authorization: Bearer``), checked by the
dataset service; every lookup is scoped to that project, so other projects' ids
answer 404.
"""

# No ``from __future__ import annotations`` here: it would shadow the submodule
# ``annotations`` in this package's namespace.
from fastapi import APIRouter

from annotation_service.api import annotations, export, review, tasks
from annotation_service.api.dependencies import Project
from common.dead_letters import dead_letters_router

router = APIRouter()
router.include_router(annotations.router)
router.include_router(tasks.router)
router.include_router(review.router)
router.include_router(export.router)
router.include_router(dead_letters_router(Project))
