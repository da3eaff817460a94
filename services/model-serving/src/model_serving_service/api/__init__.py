"""HTTP API of model-serving: catalog, models (install, bring your own), model services
(deploy, get, patch, undeploy) and a synchronous predict for trying a model.

Every route needs a project API key (``Authorization: Bearer``), checked by the dataset
service; every lookup is scoped to that key's project, so other projects' ids answer 404.
"""

from __future__ import annotations

from fastapi import APIRouter

from model_serving_service.api import catalog, models, services

router = APIRouter()
for part in (catalog, models, services):
    router.include_router(part.router)
