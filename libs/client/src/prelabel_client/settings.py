"""Client configuration from the environment (``PRELABEL_*``) or explicit values."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel_client.endpoints import SERVICES, Endpoints, field_name


class ClientSettings(BaseSettings):
    """Where the services, the broker and the bucket are, and how hard to push.

    Only ``PRELABEL_API_KEY`` is required. ``PRELABEL_URL`` is the one base URL of
    every service (``<url>/api/<service>/``); ``PRELABEL_<SERVICE>_URL`` overrides
    one service (see :mod:`prelabel_client.endpoints`). The broker and S3 fields
    matter for ``--via broker`` alone. The S3 names match the local stack's variables, so
    one environment serves ``scripts/stack.py`` and the CLI.
    """

    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore", frozen=True)

    url: str | None = Field(
        default=None, description="One base URL for every service (the reverse proxy)."
    )
    dataset_url: str | None = Field(default=None, description="The dataset service itself.")
    trigger_router_url: str | None = Field(default=None, description="The trigger-router.")
    model_serving_url: str | None = Field(default=None, description="Model-serving.")
    annotation_url: str | None = Field(default=None, description="The annotation service.")
    billing_url: str | None = Field(default=None, description="The billing service.")
    api_key: SecretStr = Field(description="Project API key (PRELABEL_API_KEY).")
    admin_key: SecretStr | None = Field(
        default=None, description="The dataset service's admin key (projects, API keys)."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one HTTP request.")
    concurrency: int = Field(default=8, ge=1, le=256, description="Files in flight at once.")

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/", description="Broker of the broker path."
    )
    topology_prefix: str = Field(
        default="", description="Prefix of the dataset service's exchange names."
    )
    s3_endpoint_url: str = Field(
        default="http://127.0.0.1:8333", description="S3 endpoint of the dataset bucket."
    )
    s3_access_key: str = Field(default="prelabel", description="S3 access key id.")
    s3_secret_key: SecretStr = Field(
        default=SecretStr("prelabel-secret"), description="S3 secret access key."
    )
    s3_bucket: str = Field(default="prelabel", description="The dataset service's bucket.")
    s3_region: str = Field(default="us-east-1", description="S3 region name.")

    @property
    def endpoints(self) -> Endpoints:
        """Every service's base URL."""
        return Endpoints.resolve(
            self.url, {service: getattr(self, field_name(service)) for service in SERVICES}
        )
