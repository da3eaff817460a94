"""HTTP API of the billing service: budget, usage and burn rate of the caller's project.

Every route needs a project API key (``Authorization: Bearer``), checked by the dataset
service; everything is scoped to that key's project. Money is ``Decimal`` end to end and
travels as JSON strings (``"12.5000"``), never as floats; amounts in requests may be JSON
strings or numbers.
"""

from __future__ import annotations

from fastapi import APIRouter

from billing_service.api import budget, usage
from billing_service.api.dependencies import Project
from common.dead_letters import dead_letters_router

router = APIRouter()
for part in (budget, usage):
    router.include_router(part.router)
router.include_router(dead_letters_router(Project))
