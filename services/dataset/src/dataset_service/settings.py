"""Configuration of the dataset service (environment variables prefixed DATASET_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServiceSettings, S3SettingsMixin, inline_blob_limit


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
    inline_blob_max_bytes: int = inline_blob_limit(
        "Blobs at most this large travel inside their item.created.v1 too (base64), so "
        "the trigger-router can hand them to a worker that then skips its S3 read; "
        "S3 stays the source of truth. 0: never."
    )
    max_page_size: int = Field(default=1000, ge=1, description="Largest page of an item list.")
    dql_max_depth: int = Field(default=10, ge=1, description="Deepest nesting a filter may use.")
    ingest_prefetch: int = Field(
        default=128, ge=1, description="Ingest commands one replica holds at once."
    )
    ingest_batch_max: int = Field(
        default=32, ge=1, description="Most ingest commands registered (concurrently) as one batch."
    )
    thumbnail_max_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description=(
            "Largest image (width x height, from its header) a thumbnail is decoded from; "
            "larger ones are refused with 422 (decompression bombs)."
        ),
    )
    thumbnail_concurrency: int = Field(
        default=2, ge=1, description="Thumbnails one replica decodes and encodes at once."
    )
    thumbnail_max_age_seconds: int = Field(
        default=86_400,
        ge=0,
        description="How long browsers may reuse a thumbnail (Cache-Control: private, max-age).",
    )
    max_directories: int = Field(
        default=1000, ge=1, description="Most subdirectories one directory listing answers."
    )
