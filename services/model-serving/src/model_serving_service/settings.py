"""Configuration of the model-serving service (environment variables prefixed MODEL_SERVING_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings, S3SettingsMixin


class Settings(BaseServiceSettings, S3SettingsMixin):
    """model-serving settings; ``MODEL_SERVING_AMQP_URL`` and ``MODEL_SERVING_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVING_", extra="ignore", frozen=True)

    http_port: int = Field(default=8083, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(
        default="model_serving", description="PostgreSQL schema of this service."
    )
    triton_grpc_url: str = Field(default="127.0.0.1:8001", description="Triton gRPC host:port.")
    triton_http_url: str = Field(default="127.0.0.1:8000", description="Triton HTTP host:port.")
