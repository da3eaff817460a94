"""Configuration of the annotation service (environment variables prefixed ANNOTATION_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    """annotation settings; ``ANNOTATION_AMQP_URL`` and ``ANNOTATION_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="ANNOTATION_", extra="ignore", frozen=True)

    http_port: int = Field(default=8084, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(default="annotation", description="PostgreSQL schema of this service.")
