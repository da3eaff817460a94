"""Configuration of the billing service (environment variables prefixed BILLING_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    """billing settings; ``BILLING_AMQP_URL`` and ``BILLING_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    http_port: int = Field(default=8085, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(default="billing", description="PostgreSQL schema of this service.")
