"""HTTP API of model-serving: catalog, models (install, bring your own), model services
(deploy, get, patch, undeploy) and a synchronous predict for trying a model.

Every route needs a project API key (``Authorization: Bearer``), checked by the dataset
service; every lookup is scoped to that key's project, so other projects' ids answer 404.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request

from common.dead_letters import dead_letters_router
from common.service import runtime_of
from model_serving_service.api import catalog, models, services
from model_serving_service.api.dependencies import ProjectId
from model_serving_service.deps import Deps


async def _service_queues(request: Request, project_id: str) -> Sequence[str]:
    """The work queues of the project's model services (``predict.<service_id>``)."""
    usecases = runtime_of(request.app).deps_as(Deps).usecases
    return [usecases.queues.queue_name(s.id) for s in await usecases.repo.list_services(project_id)]


router = APIRouter()
for part in (catalog, models, services):
    router.include_router(part.router)
router.include_router(dead_letters_router(ProjectId, project_queues=_service_queues))
