"""What the billing service's routes and handlers are given: built once in ``app.setup``."""

from __future__ import annotations

from dataclasses import dataclass

from billing_service.repository import Repository
from billing_service.settings import Settings
from billing_service.usecases.charging import Charger
from common.auth import KeyIntrospector
from common.service import dependencies


@dataclass(frozen=True, slots=True)
class Deps:
    """The billing service's dependencies."""

    settings: Settings
    repo: Repository
    charger: Charger
    introspector: KeyIntrospector


deps = dependencies(Deps)
"""FastAPI dependency: the started service's :class:`Deps`."""
