"""Composition root of the annotation service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from annotation_service.settings import Settings
from common.service import build_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the annotation app (handlers and routes arrive with the issue that builds it)."""
    return build_service_app("annotation", settings, migrations=MIGRATIONS)
