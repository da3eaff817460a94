"""Configuration of the annotation service (environment variables prefixed ANNOTATION_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import AuthSettingsMixin, BaseServiceSettings


class Settings(BaseServiceSettings, AuthSettingsMixin):
    """annotation settings; ``ANNOTATION_AMQP_URL`` and ``ANNOTATION_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="ANNOTATION_", extra="ignore", frozen=True)

    http_port: int = Field(default=8084, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(default="annotation", description="PostgreSQL schema of this service.")
    ingest_prefetch: int = Field(
        default=512, ge=1, description="prediction.completed messages one replica holds at once."
    )
    ingest_batch_max: int = Field(
        default=128, ge=1, description="Most predictions stored in one transaction."
    )
    ingest_writers: int = Field(
        default=3, ge=1, description="Transactions storing predictions at once."
    )
    cancel_retention_seconds: float = Field(
        default=14 * 24 * 3600.0,
        gt=0,
        description="How long a cancelled execution (execution.cancelled.v1) is remembered: "
        "a prediction of it arriving later stores nothing until then.",
    )
    model_serving_url: str | None = Field(
        default=None,
        description="Model-serving base URL: a task's auto_add_from_services must be the "
        "caller's model services (unset: that check is skipped).",
    )
    max_page_size: int = Field(default=1000, ge=1, description="Largest page of a list.")
    export_max_items: int = Field(
        default=100_000, ge=1, description="Most items one export may hold."
    )
