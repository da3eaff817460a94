"""The five services on the real servers, in this process, for the SDK and CLI tests.

The wiring of ``make up`` (``tests/stack_builder.py``, as in ``tests/e2e``): each app
on a real loopback port with its own PostgreSQL schema, one topology prefix and one
bucket, keys checked at this dataset service, and the router's local scaler backend
starting real model-serving workers on Triton. :func:`running_stack` is the body;
``stack`` (per module: starting five apps costs seconds) yields it with a fresh
project key.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from common.settings import S3SettingsMixin
from prelabel_client.endpoints import Endpoints, Service, env_name
from tests.integration.client.proxy import Proxy
from tests.stack_builder import Servers, five_services

ADMIN_KEY = "client-tests-admin-key"


@dataclass
class RunningStack:
    """The five services' URLs, the admin key, the apps (to stop one), and the proxy
    in front of them once a caller started one (``tests/integration/client/proxy.py``)."""

    endpoints: Endpoints
    """Each service's own port."""
    admin_key: str
    apps: dict[Service, FastAPI] = field(default_factory=dict)
    proxy: Proxy | None = None

    @property
    def url(self) -> str:
        """``PRELABEL_URL``: the proxy in front of the five."""
        if self.proxy is None:
            raise RuntimeError("no proxy in front of this stack")
        return self.proxy.url

    @property
    def proxied(self) -> Endpoints:
        """Every service through the proxy (``<url>/api/<service>``)."""
        return Endpoints.resolve(self.url)

    def proxy_requests(self) -> list[str]:
        """The request lines the proxy logged so far."""
        if self.proxy is None:
            raise RuntimeError("no proxy in front of this stack")
        return self.proxy.requests()

    def env(self, api_key: str | None = None) -> dict[str, str]:
        """The ``PRELABEL_*`` variables of a client: ``PRELABEL_URL`` alone when a proxy
        runs in front, else each service's own URL."""
        if self.proxy is not None:
            values = {"PRELABEL_URL": self.proxy.url}
        else:
            values = {env_name(s): url for s, url in self.endpoints.as_dict().items()}
        values["PRELABEL_ADMIN_KEY"] = self.admin_key
        if api_key is not None:
            values["PRELABEL_API_KEY"] = api_key
        return values

    async def new_project(self, name: str | None = None) -> tuple[str, str]:
        """A project and an API key for it: ``(project_id, key)``."""
        admin = {"Authorization": f"Bearer {self.admin_key}"}
        base = self.proxied.dataset if self.proxy is not None else self.endpoints.dataset
        async with httpx.AsyncClient(base_url=base, headers=admin) as http:
            created = await http.post(
                "/projects", json={"name": name or f"p-{uuid.uuid4().hex[:8]}"}
            )
            created.raise_for_status()
            pid = created.json()["id"]
            key = await http.post(f"/projects/{pid}/api-keys", json={"name": "tests"})
            key.raise_for_status()
        return pid, str(key.json()["key"])


@contextlib.asynccontextmanager
async def running_stack(
    *,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> AsyncIterator[RunningStack]:
    """Start the five apps (fresh schemas, prefix and bucket); remove everything after."""
    async with five_services(
        Servers(database_url, amqp_url, s3_settings, triton_url, triton_grpc_url),
        admin_key=ADMIN_KEY,
        label="cli",
    ) as five:
        yield RunningStack(Endpoints.resolve(None, five.urls), ADMIN_KEY, five.apps)
