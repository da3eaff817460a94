"""HTTP API of the trigger-router: triggers, executions, batches and the router's view of
model services. Every route needs a project API key (``Authorization: Bearer``),
checked through the dataset service; another project's ids answer 404.
"""

from __future__ import annotations

from fastapi import APIRouter

from common.dead_letters import dead_letters_router
from trigger_router_service.api import batches, executions, pipelines, services, triggers
from trigger_router_service.api.dependencies import Project

router = APIRouter()
router.include_router(triggers.router)
router.include_router(executions.router)
router.include_router(batches.router)
router.include_router(services.router)
router.include_router(pipelines.router)
router.include_router(dead_letters_router(Project))
