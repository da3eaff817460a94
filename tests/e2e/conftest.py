"""The five services on the real servers, wired as ``make up`` wires them.

The five apps run in this process on real loopback ports (``tests/stack_builder.py``),
each with its own PostgreSQL schema, on this test's topology prefix and bucket; the
router's local scaler backend starts real model-serving worker processes. The servers
are the real RabbitMQ, PostgreSQL, SeaweedFS and Triton.

The tests drive the stack as a user does, with the SDK (:class:`prelabel_client.Prelabel`):
:func:`digits_project` sets up a project with a digits model service at 0 replicas, a
dataset and a labeling task; :func:`until` waits on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from common.service import runtime_of
from common.settings import S3SettingsMixin
from prelabel_client import Endpoints as ClientEndpoints
from prelabel_client import Prelabel
from prelabel_client.models import Dataset, Scaling, Task
from scripts.demo import Endpoints
from tests.stack_builder import Servers, five_services

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
    async with five_services(
        Servers(database_url, amqp_url, s3_settings, triton_url, triton_grpc_url),
        admin_key=ADMIN_KEY,
        label="e2e",
        prefix=topology_prefix,
        bucket=s3_bucket,
    ) as five:
        # Endpoints' fields are the services' names: trigger_router for trigger-router.
        urls = {service.replace("-", "_"): url for service, url in five.urls.items()}
        yield RunningStack(Endpoints(**urls, admin_key=ADMIN_KEY), list(five.apps.values()))
