"""The five services on the real servers, in this process, wired as ``make up`` wires them.

Each app runs on a real loopback port (``serve_app``) with its own PostgreSQL schema, all
on one topology prefix and one bucket, and every service checks keys at this dataset
service. They start in ``make up``'s order: dataset, model-serving (annotation checks a
task's model services there, the router its pipelines' predict nodes), annotation (the
router checks pipeline task nodes there), trigger-router, billing. The router's local
scaler backend starts real model-serving worker processes
(``python -m model_serving_service.worker``) with model-serving's settings. The servers
are the real RabbitMQ, PostgreSQL, SeaweedFS and Triton.

Used by ``tests/e2e`` (``stack``), ``tests/integration/client`` (``running_stack``) and
``tests/fuzz`` (``ThreadedStack``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import FastAPI

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.s3 import delete_bucket, ensure_bucket, s3_client
from common.service import runtime_of
from common.settings import S3SettingsMixin, environment_of
from common.testing.broker import delete_names
from common.testing.servers import serve_app
from common.topology import ANNOTATION, BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from prelabel_client.endpoints import Service
from tests.integration.model_serving.conftest import _cleanup, ms_settings
from trigger_router_service.app import create_app as create_router
from trigger_router_service.settings import Settings as RouterSettings


@dataclass(frozen=True)
class Servers:
    """Where the real servers are (the session fixtures of the same names)."""

    database_url: str
    amqp_url: str
    s3_settings: S3SettingsMixin
    triton_url: str
    triton_grpc_url: str


@dataclass(frozen=True)
class FiveServices:
    """The five running services: their base URLs and apps, by service name."""

    urls: dict[Service, str]
    apps: dict[Service, FastAPI]


@contextlib.asynccontextmanager
async def five_services(
    servers: Servers,
    *,
    admin_key: str,
    label: str,
    prefix: str | None = None,
    bucket: str | None = None,
    outbox_poll_seconds: float = 0.2,
    ephemeral_topology: bool = False,
    overrides: Mapping[Service, Mapping[str, Any]] | None = None,
) -> AsyncIterator[FiveServices]:
    """Serve the five apps until the block ends, then remove what they made.

    ``label`` names the fresh schemas (``t_<label>_...``) and, without ``bucket``, a fresh
    bucket (``t-<label>-...``, deleted at the end); without ``prefix`` the topology gets a
    fresh prefix. ``overrides`` replaces settings of one service (``{"trigger-router":
    {"autoscaler_enabled": False}}``). At the end model-serving's Triton models, every
    queue and exchange of the prefix, and the schemas are removed.
    """
    extra: Mapping[Service, Mapping[str, Any]] = overrides or {}
    database_url, amqp_url, s3_settings = (
        servers.database_url,
        servers.amqp_url,
        servers.s3_settings,
    )
    triton_url, triton_grpc_url = servers.triton_url, servers.triton_grpc_url
    base = f"t_{label}_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{base}_{name}" for name in ("ds", "tr", "ms", "an", "bi")}
    prefix = prefix or f"t{uuid.uuid4().hex[:10]}."
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "topology_prefix": prefix,
        "outbox_poll_seconds": outbox_poll_seconds,
        "ephemeral_topology": ephemeral_topology,
    }
    apps: dict[Service, FastAPI] = {}
    urls: dict[Service, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        if bucket is None:
            bucket = f"t-{label}-{uuid.uuid4().hex[:16]}"
            blobs = await stack.enter_async_context(
                s3_client(
                    s3_settings.s3_endpoint_url,
                    s3_settings.s3_access_key,
                    s3_settings.s3_secret_key,
                )
            )
            await ensure_bucket(blobs, bucket)
            stack.push_async_callback(delete_bucket, blobs, bucket)
        stack.push_async_callback(_drop_schemas, database_url, list(schemas.values()))
        stack.push_async_callback(_remove_topology, amqp_url, prefix, apps)

        async def serve(service: Service, app: FastAPI) -> str:
            apps[service] = app
            urls[service] = await stack.enter_async_context(serve_app(app))
            return urls[service]

        def values(service: Service, schema: str, **own: Any) -> dict[str, Any]:
            return {**common, "db_schema": schemas[schema], **own, **extra.get(service, {})}

        dataset_url = await serve(
            "dataset",
            create_dataset(
                DatasetSettings(
                    **values(
                        "dataset",
                        "ds",
                        s3_endpoint_url=s3_settings.s3_endpoint_url,
                        s3_access_key=s3_settings.s3_access_key,
                        s3_secret_key=s3_settings.s3_secret_key,
                        s3_bucket=bucket,
                        admin_key=admin_key,
                    )
                )
            ),
        )
        ms_own = {
            "delivery_limit": 5,
            "ephemeral_topology": ephemeral_topology,
            **extra.get("model-serving", {}),
        }
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
            **ms_own,
        )
        # Runs after the apps stop (the stack unwinds in reverse).
        stack.push_async_callback(_cleanup, ms, database_url, schemas["ms"], triton_url, amqp_url)
        ms_url = await serve("model-serving", create_model_serving(ms))
        annotation_url = await serve(
            "annotation",
            create_annotation(
                AnnotationSettings(
                    **values("annotation", "an", auth_url=dataset_url, model_serving_url=ms_url)
                )
            ),
        )
        router = values(
            "trigger-router",
            "tr",
            auth_url=dataset_url,
            annotation_url=annotation_url,
            model_serving_url=ms_url,
            reconcile_seconds=0.25,
            leader_retry_seconds=0.25,
            local_worker_module="model_serving_service.worker",
            # What `make up` gives the router: model-serving's settings for its workers.
            model_serving_env=environment_of(ms),
            local_stop_seconds=30,
        )
        await serve("trigger-router", create_router(RouterSettings(**router)))
        billing = values("billing", "bi", auth_url=dataset_url, charge_interval_seconds=1.0)
        await serve("billing", create_billing(BillingSettings(**billing)))
        yield FiveServices(urls, apps)


async def _remove_topology(amqp_url: str, prefix: str, apps: Mapping[Service, FastAPI]) -> None:
    names: list[str] = []
    for app in apps.values():
        # An app whose start failed has no runtime.
        with contextlib.suppress(AttributeError):
            names += runtime_of(app).consumer_queues
    await delete_names(
        amqp_url,
        [n for q in names for n in Topology.queues_of(q)],
        [
            *(
                f"{prefix}{service}.{kind}"
                for service in (DATASET, TRIGGER_ROUTER, MODEL_SERVING, ANNOTATION, BILLING)
                for kind in ("events", "dlx", "commands")
            ),
            f"{prefix}{MODEL_SERVING}.predict",
        ],
    )


async def _drop_schemas(database_url: str, schemas: Iterable[str]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
