"""Shared settings mixins.

Every service composes its ``Settings`` from these mixins and gives it its own
``env_prefix`` (``DATASET_``, ``BILLING_`` ...), so one environment can hold the
configuration of every service without collisions.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AmqpDsn, Field, PostgresDsn
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.contracts import INLINE_BLOB_CEILING_BYTES
from common.topology import DEFAULT_RETRY_DELAYS

RetryDelay = Annotated[float, Field(gt=0, le=3600)]

INLINE_BLOB_DEFAULT_BYTES = 64 * 1024
"""Blobs at most this large travel inside item events and predict requests by default."""


def inline_blob_limit(description: str) -> int:
    """The ``inline_blob_max_bytes`` field of the dataset service and the trigger-router
    (default 64 KiB, 0 off, at most ``INLINE_BLOB_CEILING_BYTES``)."""
    field: int = Field(
        default=INLINE_BLOB_DEFAULT_BYTES,
        ge=0,
        le=INLINE_BLOB_CEILING_BYTES,
        description=description,
    )
    return field


class BaseServiceSettings(BaseSettings):
    """Fields every service has: broker, database, HTTP port, logging."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    amqp_url: AmqpDsn = Field(description="RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/")
    database_url: PostgresDsn = Field(
        description="PostgreSQL DSN, e.g. postgresql://postgres@127.0.0.1:5432/prelabel"
    )
    http_host: str = Field(default="127.0.0.1", description="Interface the HTTP API binds to.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="HTTP API port.")
    root_path: str = Field(
        default="",
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description=(
            "Path prefix a reverse proxy serves the API under, stripped before it reaches "
            "the service (/api/dataset): OpenAPI's server URL and /docs name it."
        ),
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    db_schema: str = Field(
        default="public", description="PostgreSQL schema holding this service's tables."
    )
    topology_prefix: str = Field(
        default="", description="Prefix of every exchange and queue name (tests, shared brokers)."
    )
    delivery_limit: int = Field(
        default=5, ge=1, description="Deliveries before a failing message is dead-lettered."
    )
    retry_delays: tuple[RetryDelay, ...] = Field(
        default=DEFAULT_RETRY_DELAYS,
        min_length=1,
        max_length=30,
        description=(
            "Seconds before each delayed retry of a message whose handling failed for a "
            "passing reason (JSON list); once spent, it is dead-lettered with the last error."
        ),
    )
    ephemeral_topology: bool = Field(
        default=False,
        description=(
            "Delete this service's queues when it stops (tests and throwaway runs): "
            "never in production, where queued work must outlive a restart."
        ),
    )
    dead_letter_scan_limit: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description=(
            "Most dead letters (every project's) one GET /dead-letters or replay looks at; "
            "the answer says when it stopped there (truncated)."
        ),
    )
    outbox_poll_seconds: float = Field(
        default=0.5, gt=0, description="Outbox relay poll interval when idle (NOTIFY wakes it)."
    )

    @property
    def amqp(self) -> str:
        """The broker URL as a plain string."""
        return str(self.amqp_url)

    @property
    def dsn(self) -> str:
        """The database DSN as a plain string."""
        return str(self.database_url)


class S3SettingsMixin(BaseSettings):
    """Object storage (any S3 API: SeaweedFS locally, AWS/MinIO in production)."""

    s3_endpoint_url: str = Field(description="S3 endpoint, e.g. http://127.0.0.1:8333")
    s3_access_key: str = Field(default="prelabel", description="S3 access key id.")
    s3_secret_key: str = Field(default="prelabel-secret", description="S3 secret access key.")
    s3_bucket: str = Field(default="prelabel", description="Bucket holding item binaries.")
    s3_region: str = Field(default="us-east-1", description="S3 region name.")


class AuthSettingsMixin(BaseSettings):
    """Where API keys are checked (the dataset service's ``/whoami``)."""

    auth_url: str = Field(
        default="http://127.0.0.1:8081", description="Base URL of the dataset service."
    )
    auth_cache_seconds: float = Field(
        default=30.0, ge=0, description="How long a key check is cached."
    )


def environment_of(settings: BaseSettings) -> dict[str, str]:
    """The environment variables that give another process the same ``settings``: its
    ``env_prefix`` plus each field's name in capitals, lists and mappings as JSON (the
    format pydantic-settings parses them from), unset (``None``) fields left out."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"{prefix}{name}".upper()] = text
    return env
