"""Composition root of the trigger-router service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from common.service import build_service_app
from trigger_router_service.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the trigger-router app (handlers and routes arrive with the issue that builds it)."""
    return build_service_app("trigger-router", settings, migrations=MIGRATIONS)
