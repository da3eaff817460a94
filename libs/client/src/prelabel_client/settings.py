"""Client configuration from the environment (``PRELABEL_*``) or explicit values."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_URL = "http://127.0.0.1:8081"


class ClientSettings(BaseSettings):
    """Where the dataset service, the broker and the bucket are, and how hard to push.

    Only ``PRELABEL_API_KEY`` is required; the broker and S3 fields matter for
    ``--via broker`` alone. The S3 names match the local stack's variables, so
    one environment serves ``scripts/stack.py`` and the CLI.
    """

    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore", frozen=True)

    url: str = Field(default=DEFAULT_URL, description="Base URL of the dataset service.")
    api_key: SecretStr = Field(description="Project API key (PRELABEL_API_KEY).")
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
