"""Composition root of the billing service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from billing_service.settings import Settings
from common.service import build_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the billing app (handlers and routes arrive with the issue that builds it)."""
    return build_service_app("billing", settings, migrations=MIGRATIONS)
