"""The five services and the web console behind the real nginx, as ``make up`` wires them,
shared by the stack's tests (one start per session): each service with its own schema,
one topology prefix, free ports; nginx with the config the stack renders from
``deploy/nginx/templates/prelabel.conf.template``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from common.settings import S3SettingsMixin
from common.testing.servers import free_port
from prelabel_client import SyncPrelabel
from prelabel_stack import CONSOLE, SERVICES, Nginx, Service, StackConfig
from prelabel_stack.components.base import terminate_all

ADMIN_KEY = "proxy-tests-admin-key"
UPLOAD_LIMIT = 3 * 1024 * 1024
"""The test stack's dataset ``max_upload_bytes`` (its ``DATASET_MAX_UPLOAD_BYTES``): small,
so an upload at the limit is cheap; the proxy's limit is rendered from it."""
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f1c1e10000000049454e44ae426082"
)


@dataclass
class Proxied:
    """The running services and the proxy in front of them."""

    config: StackConfig
    nginx: Nginx
    services: list[Service]

    @property
    def url(self) -> str:
        """``PRELABEL_URL``."""
        return self.config.proxy_url


@pytest.fixture(scope="session")
def proxied(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> Iterator[Proxied]:
    root = tmp_path_factory.mktemp("stack")
    config = dataclasses.replace(
        StackConfig.from_env(),
        root=root,
        service_ports={s.name: free_port() for s in (*SERVICES, CONSOLE)},
        proxy_port=free_port(),
        admin_key=ADMIN_KEY,
        model_repository=root / "models",
        timeout_s=90.0,
    )
    schemas = {s.name: f"t_px_{uuid.uuid4().hex[:10]}" for s in SERVICES}
    prefix = f"t{uuid.uuid4().hex[:10]}."
    services = [
        Service(
            config,
            spec,
            settings={
                "amqp_url": amqp_url,
                "database_url": database_url,
                "s3_endpoint_url": s3_settings.s3_endpoint_url,
                "s3_access_key": s3_settings.s3_access_key,
                "s3_secret_key": s3_settings.s3_secret_key,
                "s3_bucket": s3_settings.s3_bucket,
                "triton_http_url": triton_url,
                "triton_grpc_url": triton_grpc_url,
                "db_schema": schemas[spec.name],
                "topology_prefix": prefix,
                "ephemeral_topology": "true",
                # No worker processes: nothing here predicts.
                "local_prewarm": "false",
                "autoscaler_enabled": "false",
            },
        )
        for spec in SERVICES
    ]
    # The console from the stack's environment alone: the services through this proxy.
    console = Service(config, CONSOLE)
    services.append(console)
    nginx = Nginx(config)
    for path in (config.logs_dir, config.pids_dir):
        path.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []
    # Through the service's settings as the environment gives them, so that the proxy's
    # limit (rendered by site_values from the same settings) follows.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATASET_MAX_UPLOAD_BYTES", str(UPLOAD_LIMIT))
        try:
            for component in [*services, nginx]:
                component.launch()
                started.append(component)
            for component in [*services, nginx]:
                component.wait_ready()
            yield Proxied(config, nginx, services)
        finally:
            running = [(c, pid) for c in started if (pid := c.tracked_pid()) is not None]
            terminate_all(running)
            _drop_schemas(database_url, list(schemas.values()))


def _drop_schemas(database_url: str, schemas: list[str]) -> None:
    import asyncio

    async def drop() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for schema in schemas:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def project_key(proxied: Proxied) -> str:
    """A fresh project's API key, made through the proxy with the admin key."""
    with SyncPrelabel(proxied.url, ADMIN_KEY, admin_key=ADMIN_KEY) as admin:
        project = admin.projects.create(f"proxy-{uuid.uuid4().hex[:8]}")
        return str(admin.projects.create_api_key(project.id, "proxy-tests").key)


@pytest.fixture
def client_env(
    proxied: Proxied, project_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SyncPrelabel]:
    """An SDK client configured by ``PRELABEL_URL`` and ``PRELABEL_API_KEY`` alone."""
    for spec in SERVICES:
        monkeypatch.delenv(f"PRELABEL_{spec.name.upper().replace('-', '_')}_URL", raising=False)
    monkeypatch.setenv("PRELABEL_URL", proxied.url)
    monkeypatch.setenv("PRELABEL_API_KEY", project_key)
    with SyncPrelabel.from_env() as client:
        yield client
