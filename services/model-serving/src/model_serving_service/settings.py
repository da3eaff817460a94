"""Configuration of the model-serving service and its predict workers.

Environment variables are prefixed ``MODEL_SERVING_``. The HTTP service and the
replicas (``python -m model_serving_service.worker``) read the same settings; a
replica additionally gets ``MODEL_SERVING_WORKER_SERVICE_ID`` and
``MODEL_SERVING_WORKER_REPLICA_ID`` from whoever starts it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from common.settings import AuthSettingsMixin, BaseServiceSettings, S3SettingsMixin


class Settings(BaseServiceSettings, S3SettingsMixin, AuthSettingsMixin):
    """model-serving settings; ``MODEL_SERVING_AMQP_URL``, ``MODEL_SERVING_DATABASE_URL`` and
    ``MODEL_SERVING_S3_ENDPOINT_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVING_", extra="ignore", frozen=True)

    http_port: int = Field(default=8083, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(
        default="model_serving", description="PostgreSQL schema of this service."
    )
    triton_grpc_url: str = Field(
        default="127.0.0.1:8001", description="Triton gRPC host:port (inference)."
    )
    triton_http_url: str = Field(
        default="127.0.0.1:8000", description="Triton HTTP host:port (model control, health)."
    )
    model_repository: Path = Field(
        default=Path(".stack/triton/models"),
        validation_alias=AliasChoices(
            "MODEL_SERVING_MODEL_REPOSITORY", "PRELABEL_TRITON_MODEL_REPOSITORY"
        ),
        description="Triton's model repository as this process sees it (model directories "
        "are written here, then loaded through Triton's repository API).",
    )

    # ---------------------------------------------------------------- HTTP API
    max_archive_bytes: int = Field(
        default=200 * 1024 * 1024, gt=0, description="Largest BYOM archive upload (413 above)."
    )
    max_unpacked_bytes: int = Field(
        default=1024 * 1024 * 1024, gt=0, description="Largest unpacked BYOM model directory."
    )
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest image a prediction accepts."
    )

    # ---------------------------------------------------------------- Triton lifecycle
    load_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Longest a model load may take before it counts as failed."
    )
    hold_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a replica refreshes its hold on its model."
    )
    hold_stale_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A hold not refreshed for this long belongs to a dead replica.",
    )
    janitor_seconds: float = Field(
        default=15.0, gt=0, description="How often the service expires dead replicas' holds."
    )
    load_retry_backoff_seconds: float = Field(
        default=0.5,
        gt=0,
        description="First wait before a model load is tried again while Triton does not "
        "answer (doubles each time, up to load_retry_max_backoff_seconds); the service "
        "stays as it was and the replica loads the model once Triton is back.",
    )
    load_retry_max_backoff_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait between model load tries."
    )
    undeploy_drain_seconds: float = Field(
        default=60.0, ge=0, description="How long an undeploy waits for the queue to empty."
    )

    # ---------------------------------------------------------------- cancels
    cancel_retention_seconds: float = Field(
        default=14 * 24 * 3600.0,
        gt=0,
        description="How long a cancelled execution (execution.cancelled.v1) is remembered: "
        "workers skip its requests until then; a request still queued after that is "
        "predicted and its outcome ignored by the router.",
    )
    handler_prefetch: int = Field(
        default=64, ge=1, description="Messages the service's event handlers hold at once."
    )

    # ---------------------------------------------------------------- predict workers
    worker_service_id: str | None = Field(
        default=None, description="Model service a worker process serves (replicas only)."
    )
    worker_replica_id: str | None = Field(
        default=None, description="This replica's id (replicas only; generated if missing)."
    )
    batch_delay_ms: float = Field(
        default=20.0,
        ge=0,
        description="How long a worker waits to fill a micro-batch while another batch is "
        "being predicted (an idle worker sends a lone request at once).",
    )
    triton_retry_attempts: int = Field(
        default=3, ge=1, description="Triton calls per delivery before the message is requeued."
    )
    triton_retry_backoff_seconds: float = Field(
        default=0.2, ge=0, description="First backoff between Triton retries (doubles each time)."
    )
    worker_start_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a worker that cannot reach the broker or the database at "
        "start-up keeps trying (with backoff, one warning) before it exits 3.",
    )
    worker_metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus port of a worker (0: none)."
    )
