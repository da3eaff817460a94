"""The five services on the real servers, in this process, for the SDK and CLI tests.

The same wiring as ``tests/e2e/conftest.py`` (which ``make up`` mirrors): each app on
a real loopback port with its own PostgreSQL schema, one topology prefix and one
bucket, keys checked at this dataset service, and the router's local scaler backend
starting real model-serving workers on Triton. :func:`running_stack` is the body;
``stack`` (per module: starting five apps costs seconds) yields it with a fresh
project key.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.s3 import delete_bucket, ensure_bucket, s3_client
from common.service import runtime_of
from common.settings import S3SettingsMixin
from common.testing.broker import delete_names
from common.testing.servers import free_port, serve_app
from common.topology import ANNOTATION, BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from prelabel_client.endpoints import SERVICES, Endpoints, Service, env_name
from tests.integration.client.proxy import Proxy
from tests.integration.model_serving.conftest import _cleanup, ms_settings
from trigger_router_service.app import create_app as create_router
from trigger_router_service.settings import Settings as RouterSettings

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
    base = f"t_cli_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{base}_{name}" for name in ("ds", "tr", "ms", "an", "bi")}
    prefix = f"t{uuid.uuid4().hex[:10]}."
    bucket = f"t-cli-{uuid.uuid4().hex[:16]}"
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "topology_prefix": prefix,
        "outbox_poll_seconds": 0.2,
    }
    s3: dict[str, Any] = {
        "s3_endpoint_url": s3_settings.s3_endpoint_url,
        "s3_access_key": s3_settings.s3_access_key,
        "s3_secret_key": s3_settings.s3_secret_key,
        "s3_bucket": bucket,
    }
    apps: dict[Service, FastAPI] = {}
    ms: Any = None
    async with s3_client(
        s3_settings.s3_endpoint_url, s3_settings.s3_access_key, s3_settings.s3_secret_key
    ) as blobs:
        await ensure_bucket(blobs, bucket)
        try:
            async with contextlib.AsyncExitStack() as running:
                apps["dataset"] = create_dataset(
                    DatasetSettings(**common, **s3, db_schema=schemas["ds"], admin_key=ADMIN_KEY)
                )
                dataset_url = await running.enter_async_context(serve_app(apps["dataset"]))
                ms = ms_settings(
                    database_url=database_url,
                    amqp_url=amqp_url,
                    s3=s3_settings,
                    bucket=bucket,
                    schema=schemas["ms"],
                    prefix=prefix,
                    auth_url=dataset_url,
                    triton_http_url=triton_url,
                    triton_grpc_url=triton_grpc_url,
                    delivery_limit=5,
                )
                # Lists and mappings as JSON: pydantic-settings parses complex fields so.
                worker_env = {
                    f"MODEL_SERVING_{k.upper()}": v
                    if isinstance(v, str)
                    else json.dumps(v)
                    if isinstance(v, list | dict)
                    else str(v)
                    for k, v in ms.model_dump(mode="json").items()
                    if v is not None
                }
                # The router checks a pipeline's task at the annotation service: pick its
                # port now, as the annotation app is served after the router is built.
                annotation_port = free_port()
                apps["trigger-router"] = create_router(
                    RouterSettings(
                        **common,
                        annotation_url=f"http://127.0.0.1:{annotation_port}",
                        db_schema=schemas["tr"],
                        auth_url=dataset_url,
                        reconcile_seconds=0.25,
                        leader_retry_seconds=0.25,
                        local_worker_module="model_serving_service.worker",
                        model_serving_env=worker_env,
                        local_stop_seconds=30,
                    )
                )
                apps["model-serving"] = create_model_serving(ms)
                apps["annotation"] = create_annotation(
                    AnnotationSettings(**common, db_schema=schemas["an"], auth_url=dataset_url)
                )
                apps["billing"] = create_billing(
                    BillingSettings(
                        **common,
                        db_schema=schemas["bi"],
                        auth_url=dataset_url,
                        charge_interval_seconds=1.0,
                    )
                )
                urls: dict[Service, str] = {"dataset": dataset_url}
                for service in SERVICES[1:]:
                    port = annotation_port if service == "annotation" else None
                    urls[service] = await running.enter_async_context(
                        serve_app(apps[service], port)
                    )
                yield RunningStack(Endpoints.resolve(None, urls), ADMIN_KEY, apps)
        finally:
            if ms is not None:
                await _cleanup(ms, database_url, schemas["ms"], triton_url, amqp_url)
            await _remove_topology(amqp_url, prefix, list(apps.values()))
            conn = await asyncpg.connect(database_url)
            try:
                for schema in schemas.values():
                    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()
            await delete_bucket(blobs, bucket)


async def _remove_topology(amqp_url: str, prefix: str, apps: list[FastAPI]) -> None:
    names: list[str] = []
    for app in apps:
        # An app whose start failed has no runtime.
        with contextlib.suppress(AttributeError):
            names += runtime_of(app).consumer_queues
    await delete_names(
        amqp_url,
        [*names, *(f"{q}.dlq" for q in names)],
        [
            *(
                f"{prefix}{service}.{kind}"
                for service in (DATASET, TRIGGER_ROUTER, MODEL_SERVING, ANNOTATION, BILLING)
                for kind in ("events", "dlx", "commands")
            ),
            f"{prefix}{MODEL_SERVING}.predict",
        ],
    )
