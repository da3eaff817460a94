"""Configuration of the console (environment variables prefixed CONSOLE_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel_client.endpoints import Endpoints, Service


class Settings(BaseSettings):
    """console settings. It holds no data: no database, no broker, only where the five
    services are (``CONSOLE_PRELABEL_URL``, or one URL per service) and how sessions are
    sealed."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True)

    http_host: str = Field(default="127.0.0.1", description="Interface the web UI binds to.")
    http_port: int = Field(default=8086, ge=1, le=65535, description="Web UI port.")
    root_path: str = Field(
        default="",
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="Path prefix a reverse proxy serves the console under (empty: at /).",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    prelabel_url: str | None = Field(
        default=None,
        description="The one URL of the services (the proxy: <url>/api/<service>/).",
    )
    dataset_url: str | None = Field(default=None, description="The dataset service, directly.")
    trigger_router_url: str | None = Field(default=None, description="The trigger-router.")
    model_serving_url: str | None = Field(default=None, description="The model-serving service.")
    annotation_url: str | None = Field(default=None, description="The annotation service.")
    billing_url: str | None = Field(default=None, description="The billing service.")
    session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Secret the session cookie is encrypted with (at least 32 characters; every "
            "replica needs the same one). Unset: a random one per process, so a restart "
            "signs everybody out."
        ),
    )
    session_max_age_seconds: int = Field(
        default=8 * 3600, ge=60, description="How long a sign-in lasts."
    )
    cookie_secure: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (set behind TLS)."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for one of the services' answers."
    )
    page_size: int = Field(default=60, ge=1, le=1000, description="Items per dataset grid page.")

    def endpoints(self) -> Endpoints:
        """Where each service is: its own URL, else under ``prelabel_url``, else local."""
        overrides: dict[Service, str | None] = {
            "dataset": self.dataset_url,
            "trigger-router": self.trigger_router_url,
            "model-serving": self.model_serving_url,
            "annotation": self.annotation_url,
            "billing": self.billing_url,
        }
        return Endpoints.resolve(self.prelabel_url, overrides)
