"""Configuration of the trigger-router service (environment variables prefixed TRIGGER_ROUTER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    """trigger-router settings; ``TRIGGER_ROUTER_AMQP_URL`` and ``TRIGGER_ROUTER_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="TRIGGER_ROUTER_", extra="ignore", frozen=True)

    http_port: int = Field(default=8082, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(
        default="trigger_router", description="PostgreSQL schema of this service."
    )
