"""Configuration of the dataset service (environment variables prefixed DATASET_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings, S3SettingsMixin


class Settings(BaseServiceSettings, S3SettingsMixin):
    """Dataset settings; ``DATASET_AMQP_URL``, ``DATASET_DATABASE_URL`` and
    ``DATASET_S3_ENDPOINT_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="DATASET_", extra="ignore", frozen=True)

    http_port: int = Field(default=8081, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(default="dataset", description="PostgreSQL schema of this service.")
    admin_key: SecretStr | None = Field(
        default=None,
        description="Key that may create projects and API keys; admin routes are off without it.",
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0, description="Largest accepted upload (413 above)."
    )
    max_page_size: int = Field(default=1000, ge=1, description="Largest page of an item list.")
    dql_max_depth: int = Field(default=10, ge=1, description="Deepest nesting a filter may use.")
    ingest_prefetch: int = Field(
        default=128, ge=1, description="Ingest commands one replica holds at once."
    )
    ingest_batch_max: int = Field(
        default=32, ge=1, description="Most ingest commands registered (concurrently) as one batch."
    )
