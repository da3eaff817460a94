"""Configuration of the trigger-router service (environment variables prefixed TRIGGER_ROUTER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import AuthSettingsMixin, BaseServiceSettings, inline_blob_limit


class Settings(BaseServiceSettings, AuthSettingsMixin):
    """trigger-router settings; ``TRIGGER_ROUTER_AMQP_URL`` and ``TRIGGER_ROUTER_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="TRIGGER_ROUTER_", extra="ignore", frozen=True)

    http_port: int = Field(default=8082, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(
        default="trigger_router", description="PostgreSQL schema of this service."
    )

    # ---------------------------------------------------------------- routing
    routing_prefetch: int = Field(
        default=256, ge=1, description="Item events one replica holds unacknowledged at once."
    )
    routing_batch: int = Field(
        default=128,
        ge=1,
        description="Most item events routed in one database transaction (micro-batch).",
    )
    inline_blob_max_bytes: int = inline_blob_limit(
        "An item.created.v1 blob carried inline (the dataset service's "
        "DATASET_INLINE_BLOB_MAX_BYTES) at most this large is copied into the predict "
        "requests it creates, so the worker skips its S3 read. 0: never."
    )
    prediction_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Attempts per execution: a retryable prediction failure (Triton or S3 down) is "
            "run again after a backoff until this many attempts failed; then it is failed."
        ),
    )
    prediction_retry_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Backoff before the second attempt; doubled for each further one.",
    )
    prediction_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest backoff between two attempts."
    )
    retry_poll_seconds: float = Field(
        default=0.5, gt=0, description="How often due retries are looked for and sent."
    )
    outcome_prefetch: int = Field(
        default=64,
        ge=1,
        description="Prediction outcomes (and other events: replicas, services, budgets, task "
        "items) one replica holds unacknowledged.",
    )
    outcome_batch_max: int = Field(
        default=32, ge=1, description="Most prediction outcomes handled in one batch."
    )
    max_page_size: int = Field(default=500, ge=1, description="Largest page of an execution list.")
    dql_max_depth: int = Field(default=10, ge=1, description="Deepest nesting a filter may use.")
    dataset_url: str | None = Field(
        default=None,
        description="Dataset service base URL for browser-style predict (default: auth_url).",
    )
    annotation_url: str = Field(
        default="http://127.0.0.1:8084",
        description="Annotation service base URL (pipelines check their task nodes' tasks).",
    )
    model_serving_url: str | None = Field(
        default=None,
        description=(
            "Model-serving base URL (pipelines check that each predict node's model takes "
            "the dataset node's items; unset: that check is skipped)."
        ),
    )
    pipeline_run_max_items: int = Field(
        default=10_000, ge=1, description="Most items one POST /pipelines/{id}/run takes."
    )
    batch_max_items: int = Field(
        default=10_000, ge=1, description="Most items one browser-style predict request takes."
    )

    # ---------------------------------------------------------------- autoscaler
    autoscaler_enabled: bool = Field(
        default=True, description="Whether this replica competes for the autoscaler's leadership."
    )
    scaler_backend: Literal["local", "kubernetes", "docker"] = Field(
        default="local",
        description=(
            "How replicas are started: local worker processes, a Kubernetes Deployment, "
            "or worker containers through a Docker/Podman engine API (docker-compose)."
        ),
    )
    reconcile_seconds: float = Field(
        default=1.0, gt=0, description="Period of the autoscaler's queue-depth reconcile."
    )
    leader_retry_seconds: float = Field(
        default=1.0, gt=0, description="How often a follower tries to take the autoscaler lock."
    )
    inflight_horizon_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Queued executions older than this no longer count as unacked load.",
    )

    # ---------------------------------------------------------------- local backend
    model_serving_env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra MODEL_SERVING_* variables for local worker processes (JSON object); "
            "every MODEL_SERVING_* variable of the router's own environment is passed too."
        ),
    )
    local_worker_module: str = Field(
        default="model_serving_service.worker",
        description="Module the local backend runs with ``python -m`` as one replica.",
    )
    local_prewarm: bool = Field(
        default=True,
        description=(
            "Keep one standby worker process with its modules imported, so a scale-up "
            "from 0 waits for the model load, not for the interpreter start."
        ),
    )
    local_stop_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a stopping local replica may drain before SIGKILL.",
    )

    # ---------------------------------------------------------------- kubernetes backend
    kube_namespace: str = Field(
        default="prelabel", description="Namespace of the predict-worker Deployments."
    )
    kube_deployment_pattern: str = Field(
        default="model-serving-worker-{service_id}",
        description=(
            "Deployment name of a model service; ``{service_id}`` is replaced by the service id "
            "made DNS-safe (lowercase, ``_`` -> ``-``)."
        ),
    )
    kube_api_url: str | None = Field(
        default=None,
        description="API server URL; unset = in-cluster config, else the local kubeconfig.",
    )
    kube_token: str | None = Field(
        default=None, description="Bearer token for ``kube_api_url`` (tests, out-of-cluster)."
    )
    kube_verify_ssl: bool = Field(
        default=True, description="Verify the API server's TLS certificate."
    )
    kube_worker_template: Path = Field(
        default=Path("/etc/prelabel/worker-template/deployment.yaml"),
        description="The worker Deployment template (a mounted ConfigMap), one per service.",
    )

    # ---------------------------------------------------------------- docker backend
    docker_url: str = Field(
        default="unix:///var/run/docker.sock",
        description="Docker Engine API (Docker, or `podman system service`): unix:// or http://.",
    )
    docker_worker_image: str = Field(
        default="prelabel/model-serving-worker:dev", description="Image of a worker container."
    )
    docker_network: str | None = Field(
        default=None, description="Network the worker containers join (the compose network)."
    )
    docker_stack: str = Field(
        default="prelabel", description="Label value that marks this stack's worker containers."
    )
