"""Ports, paths and credentials of the local stack, read once from the environment."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_ADMIN_KEY = "prelabel-dev-admin-key"
DATABASES = ("prelabel", "prelabel_test")


class StackError(RuntimeError):
    """A component could not be brought up; the message says why and what to do."""


# --------------------------------------------------------------------------- config


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not an integer") from exc


@dataclass(frozen=True)
class ServiceSpec:
    """One of the five services: its name and package; the rest is its ``Settings`` class.

    Every variable a service reads is a field of ``<package>.settings.Settings`` (a
    pydantic-settings class with an ``env_prefix``), so names, the default port and the
    limits the proxy enforces are read from there, never restated here.
    """

    name: str
    package: str
    mount: str | None = None
    """Where the proxy serves it, when not ``/api/<name>`` (the console: ``""``, at ``/``)."""

    @property
    def settings_class(self) -> type[BaseSettings]:
        """``<package>.settings.Settings``."""
        module = importlib.import_module(f"{self.package}.settings")
        cls: type[BaseSettings] = module.Settings
        return cls

    @property
    def prefix(self) -> str:
        """The settings' ``env_prefix`` (``MODEL_SERVING_``)."""
        return str(self.settings_class.model_config.get("env_prefix", ""))

    def env_name(self, field_name: str) -> str:
        """The variable a settings field is read from (its first alias, if it has one)."""
        info = self.settings_class.model_fields[field_name]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            if isinstance(first, str):
                return first
        if isinstance(alias, str):
            return alias
        return f"{self.prefix}{field_name.upper()}"

    def has_setting(self, field_name: str) -> bool:
        """Whether the service has this settings field."""
        return field_name in self.settings_class.model_fields

    @property
    def default_port(self) -> int:
        """The default of the settings' ``http_port``."""
        return int(self.settings_class.model_fields["http_port"].default)

    @property
    def port_env(self) -> str:
        """The variable that overrides this service's port (``PRELABEL_DATASET_PORT``)."""
        return f"PRELABEL_{self.name.upper().replace('-', '_')}_PORT"

    @property
    def proxy_path(self) -> str:
        """Where the reverse proxy serves it: ``/api/<name>`` (what ``PRELABEL_URL``
        clients call, see ``prelabel_client.endpoints``)."""
        return self.mount if self.mount is not None else f"/api/{self.name}"


SERVICES = (
    ServiceSpec("dataset", "dataset_service"),
    ServiceSpec("trigger-router", "trigger_router_service"),
    ServiceSpec("model-serving", "model_serving_service"),
    ServiceSpec("annotation", "annotation_service"),
    ServiceSpec("billing", "billing_service"),
)
CONSOLE = ServiceSpec("console", "console_service", mount="")
"""The web console: started with the five (``make up``), holding no data of its own."""


@dataclass(frozen=True)
class StackConfig:
    """Ports, paths and credentials of the local stack, read once from the environment."""

    root: Path
    amqp_port: int
    test_amqp_port: int
    pg_port: int
    pg_cluster: str
    s3_port: int
    seaweedfs_master_port: int
    seaweedfs_volume_port: int
    seaweedfs_filer_port: int
    s3_bucket: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    model_repository: Path
    service_ports: dict[str, int]
    proxy_port: int
    admin_key: str
    admin_key_is_default: bool
    log_level: str
    timeout_s: float | None

    @classmethod
    def from_env(cls) -> StackConfig:
        """Read the configuration (see the module docstring for the variables)."""
        root = Path(os.environ.get("PRELABEL_STACK_DIR") or REPO_ROOT / ".stack").resolve()
        repo = os.environ.get("PRELABEL_TRITON_MODEL_REPOSITORY")
        admin_key = os.environ.get("DATASET_ADMIN_KEY")
        timeout = os.environ.get("PRELABEL_STACK_TIMEOUT")
        return cls(
            root=root,
            amqp_port=_env_int("PRELABEL_AMQP_PORT", 5672),
            test_amqp_port=_env_int("PRELABEL_TEST_AMQP_PORT", 5682),
            pg_port=_env_int("PRELABEL_PG_PORT", 5432),
            pg_cluster=os.environ.get("PRELABEL_PG_CLUSTER", "main"),
            s3_port=_env_int("PRELABEL_S3_PORT", 8333),
            seaweedfs_master_port=_env_int("PRELABEL_SEAWEEDFS_MASTER_PORT", 9333),
            seaweedfs_volume_port=_env_int("PRELABEL_SEAWEEDFS_VOLUME_PORT", 8080),
            seaweedfs_filer_port=_env_int("PRELABEL_SEAWEEDFS_FILER_PORT", 8888),
            s3_bucket=os.environ.get("PRELABEL_S3_BUCKET", "prelabel"),
            s3_access_key=os.environ.get("PRELABEL_S3_ACCESS_KEY", "prelabel"),
            s3_secret_key=os.environ.get("PRELABEL_S3_SECRET_KEY", "prelabel-secret"),
            s3_region=os.environ.get("PRELABEL_S3_REGION", "us-east-1"),
            triton_http_port=_env_int("PRELABEL_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=_env_int("PRELABEL_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=_env_int("PRELABEL_TRITON_METRICS_PORT", 8002),
            model_repository=Path(repo).resolve() if repo else root / "triton" / "models",
            service_ports={
                s.name: _env_int(s.port_env, s.default_port) for s in (*SERVICES, CONSOLE)
            },
            proxy_port=_env_int("PRELABEL_PROXY_PORT", 8090),
            admin_key=admin_key or DEV_ADMIN_KEY,
            admin_key_is_default=not admin_key,
            log_level=os.environ.get("PRELABEL_LOG_LEVEL", "INFO"),
            timeout_s=float(timeout) if timeout else None,
        )

    @property
    def logs_dir(self) -> Path:
        """``.stack/logs``."""
        return self.root / "logs"

    @property
    def pids_dir(self) -> Path:
        """``.stack/pids``."""
        return self.root / "pids"

    @property
    def amqp_url(self) -> str:
        """The broker URL every service gets."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def database_url(self, database: str = "prelabel") -> str:
        """DSN of one database on the local PostgreSQL (trust auth, user postgres)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{database}"

    @property
    def s3_endpoint(self) -> str:
        """SeaweedFS's S3 gateway."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def triton_http_url(self) -> str:
        """Triton's HTTP address as tritonclient wants it (host:port)."""
        return f"127.0.0.1:{self.triton_http_port}"

    @property
    def triton_grpc_url(self) -> str:
        """Triton's gRPC address (host:port)."""
        return f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def proxy_url(self) -> str:
        """The one URL of every client (nginx): ``PRELABEL_URL``."""
        return f"http://127.0.0.1:{self.proxy_port}"

    def service_url(self, name: str) -> str:
        """One service's own address (behind the proxy)."""
        return f"http://127.0.0.1:{self.service_ports[name]}"

    def endpoints(self) -> dict[str, str]:
        """What clients need to reach the stack (``status --json`` prints it)."""
        return {
            "amqp_url": self.amqp_url,
            "database_url": self.database_url(),
            "test_database_url": self.database_url("prelabel_test"),
            "s3_endpoint_url": self.s3_endpoint,
            "s3_bucket": self.s3_bucket,
            "s3_access_key": self.s3_access_key,
            "s3_secret_key": self.s3_secret_key,
            "s3_region": self.s3_region,
            "triton_http_url": self.triton_http_url,
            "triton_grpc_url": self.triton_grpc_url,
            "triton_metrics_url": f"http://127.0.0.1:{self.triton_metrics_port}/metrics",
            "triton_model_repository": str(self.model_repository),
            "stack_dir": str(self.root),
            "proxy_url": self.proxy_url,
        }
