"""The five services on the real servers, wired as ``make up`` wires them.

The five apps run in this process on real loopback ports (``serve_app``), each with its
own PostgreSQL schema, all on one topology prefix and one bucket: every service checks
keys at this dataset service, and the router's local scaler backend starts real
model-serving worker processes (``python -m model_serving_service.worker``) with
model-serving's settings. The servers are the real RabbitMQ, PostgreSQL, SeaweedFS and
Triton.

The tests drive the stack as a user does, with the SDK (:class:`prelabel_client.Prelabel`):
:func:`digits_project` sets up a project with a digits model service at 0 replicas, a
dataset and a labeling task; :func:`until` waits on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.service import runtime_of
from common.settings import S3SettingsMixin, environment_of
from common.testing.broker import delete_names
from common.testing.servers import serve_app
from common.topology import ANNOTATION, BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from prelabel_client import Endpoints as ClientEndpoints
from prelabel_client import Prelabel
from prelabel_client.models import Dataset, Scaling, Task
from scripts.demo import Endpoints
from tests.integration.model_serving.conftest import _cleanup, ms_settings
from trigger_router_service.app import create_app as create_router
from trigger_router_service.settings import Settings as RouterSettings

ADMIN_KEY = "e2e-admin-key"
DEADLINE_S = 150.0


async def until(
    what: str, probe: Callable[[], Awaitable[Any]], deadline_s: float = DEADLINE_S
) -> Any:
    """Poll ``probe`` until it answers something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"waited {deadline_s:.0f}s for {what}; last answer {last!r}")


@dataclass(frozen=True)
class DigitsProject:
    """A project set up for pre-labeling digits, and the client signed in to it."""

    client: Prelabel
    dataset: Dataset
    service_id: str
    task: Task


@contextlib.asynccontextmanager
async def digits_project(
    endpoints: ClientEndpoints | str,
    admin_key: str,
    name: str,
    *,
    cooldown_seconds: float = 2,
) -> AsyncIterator[DigitsProject]:
    """A new project with an API key, a dataset ``digits``, the catalog's digits model
    deployed at 0..1 replicas (ready, and known to the router) and a task ``review``."""
    async with Prelabel(endpoints, "admin-only", admin_key=admin_key) as admin:
        project = await admin.projects.create(name)
        key = await admin.projects.create_api_key(project.id, "e2e")
    async with Prelabel(endpoints, str(key.key), timeout_s=60) as client:
        dataset = await client.datasets.create("digits")
        model = await client.models.install("digits-classifier")
        scaling = Scaling(
            min_replicas=0, max_replicas=1, cooldown_seconds=cooldown_seconds, drain_seconds=2
        )
        service = await client.services.deploy(model.id, "digits", scaling)
        await client.services.wait_ready(service.id, timeout_s=DEADLINE_S)
        task = await client.tasks.create("review", dataset.id)
        yield DigitsProject(client, dataset, service.id, task)


@dataclass
class RunningStack:
    """The five services' URLs, plus what cleaning up needs."""

    endpoints: Endpoints
    apps: list[FastAPI]

    @property
    def client_endpoints(self) -> ClientEndpoints:
        """The five URLs as the SDK takes them."""
        e = self.endpoints
        return ClientEndpoints(
            e.dataset, e.trigger_router, e.model_serving, e.annotation, e.billing
        )

    def app(self, service: str) -> FastAPI:
        """The running app of ``service`` (``trigger-router``, ``annotation`` ...)."""
        for app in self.apps:
            if runtime_of(app).name == service:
                return app
        raise LookupError(f"no {service} app in this stack")


@pytest.fixture
async def stack(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    topology_prefix: str,
    triton_url: str,
    triton_grpc_url: str,
) -> AsyncIterator[RunningStack]:
    base = f"t_e2e_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{base}_{name}" for name in ("ds", "tr", "ms", "an", "bi")}
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "topology_prefix": topology_prefix,
        "outbox_poll_seconds": 0.2,
    }
    s3: dict[str, Any] = {
        "s3_endpoint_url": s3_settings.s3_endpoint_url,
        "s3_access_key": s3_settings.s3_access_key,
        "s3_secret_key": s3_settings.s3_secret_key,
        "s3_bucket": s3_bucket,
    }
    dataset = create_dataset(
        DatasetSettings(**common, **s3, db_schema=schemas["ds"], admin_key=ADMIN_KEY)
    )
    apps: list[FastAPI] = [dataset]
    ms: Any = None
    try:
        async with contextlib.AsyncExitStack() as running:
            dataset_url = await running.enter_async_context(serve_app(dataset))
            ms = ms_settings(
                database_url=database_url,
                amqp_url=amqp_url,
                s3=s3_settings,
                bucket=s3_bucket,
                schema=schemas["ms"],
                prefix=topology_prefix,
                auth_url=dataset_url,
                triton_http_url=triton_url,
                triton_grpc_url=triton_grpc_url,
                delivery_limit=5,
            )
            # What `make up` gives the router: model-serving's settings for its workers.
            worker_env = environment_of(ms)
            # Model-serving first: annotation checks a task's model services there, and the
            # router its pipelines' predict nodes.
            model_serving = create_model_serving(ms)
            apps.append(model_serving)
            ms_url = await running.enter_async_context(serve_app(model_serving))
            # Annotation before the router: the router checks pipeline task nodes there.
            annotation = create_annotation(
                AnnotationSettings(
                    **common,
                    db_schema=schemas["an"],
                    auth_url=dataset_url,
                    model_serving_url=ms_url,
                )
            )
            apps.append(annotation)
            annotation_url = await running.enter_async_context(serve_app(annotation))
            router = create_router(
                RouterSettings(
                    **common,
                    db_schema=schemas["tr"],
                    auth_url=dataset_url,
                    annotation_url=annotation_url,
                    model_serving_url=ms_url,
                    reconcile_seconds=0.25,
                    leader_retry_seconds=0.25,
                    local_worker_module="model_serving_service.worker",
                    model_serving_env=worker_env,
                    local_stop_seconds=30,
                )
            )
            billing = create_billing(
                BillingSettings(
                    **common,
                    db_schema=schemas["bi"],
                    auth_url=dataset_url,
                    charge_interval_seconds=1.0,
                )
            )
            apps += [router, billing]
            urls = {"annotation": annotation_url, "ms": ms_url}
            for name, app in (("router", router), ("billing", billing)):
                urls[name] = await running.enter_async_context(serve_app(app))
            yield RunningStack(
                Endpoints(
                    dataset=dataset_url,
                    trigger_router=urls["router"],
                    model_serving=urls["ms"],
                    annotation=urls["annotation"],
                    billing=urls["billing"],
                    admin_key=ADMIN_KEY,
                ),
                apps,
            )
    finally:
        if ms is not None:
            await _cleanup(ms, database_url, schemas["ms"], triton_url, amqp_url)
        names = _queues(apps)
        p = topology_prefix
        await delete_names(
            amqp_url,
            [n for q in names for n in Topology.queues_of(q)],
            [
                *(
                    f"{p}{service}.{kind}"
                    for service in (DATASET, TRIGGER_ROUTER, MODEL_SERVING, ANNOTATION, BILLING)
                    for kind in ("events", "dlx", "commands")
                ),
                f"{p}{MODEL_SERVING}.predict",
            ],
        )
        conn = await asyncpg.connect(database_url)
        try:
            for schema in schemas.values():
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


def _queues(apps: list[FastAPI]) -> list[str]:
    names: list[str] = []
    for app in apps:
        # An app whose start failed has no runtime.
        with contextlib.suppress(AttributeError):
            names += runtime_of(app).consumer_queues
    return names
