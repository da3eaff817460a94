"""The whole pre-labeling flow across the five services: upload -> trigger -> a model
service scaled from zero -> prediction on Triton -> annotations -> labeling task ->
review -> billing -> back to zero.

The five apps run in this process on real loopback ports (``serve_app``), each with its
own PostgreSQL schema, all on one topology prefix and one bucket, wired as ``make up``
wires them: every service checks keys at this dataset service, and the router's local
scaler backend starts real model-serving worker processes (``python -m
model_serving_service.worker``) with model-serving's settings. The servers are the real
RabbitMQ, PostgreSQL, SeaweedFS and Triton. The test drives the stack with the flow of
``make demo`` (:class:`scripts.demo.DemoFlow`), so the demo and this test cannot drift.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.service import runtime_of
from common.settings import S3SettingsMixin
from common.testing.broker import delete_names
from common.testing.servers import serve_app
from common.topology import ANNOTATION, BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from scripts.demo import DemoFlow, DemoOptions, Endpoints, Reporter, Snapshot
from tests.integration.model_serving.conftest import _cleanup, ms_settings
from trigger_router_service.app import create_app as create_router
from trigger_router_service.settings import Settings as RouterSettings

ADMIN_KEY = "e2e-admin-key"
IMAGES = 10


@dataclass
class Recorder(Reporter):
    """Keeps what the flow reports, to check what the user would have seen."""

    steps: list[str] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    scaling_seen: list[tuple[int, int, int]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def step(self, number: int, title: str) -> None:
        self.steps.append(title)

    def upload_advanced(self, name: str, status: str) -> None:
        self.uploads.append(status)

    def watch(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        self.scaling_seen.append((desired, actual, running))


@dataclass
class RunningStack:
    """The five services' URLs, plus what cleaning up needs."""

    endpoints: Endpoints
    apps: list[FastAPI]


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
            worker_env = {
                f"MODEL_SERVING_{k.upper()}": str(v)
                for k, v in ms.model_dump().items()
                if v is not None
            }
            router = create_router(
                RouterSettings(
                    **common,
                    db_schema=schemas["tr"],
                    auth_url=dataset_url,
                    reconcile_seconds=0.25,
                    leader_retry_seconds=0.25,
                    local_worker_module="model_serving_service.worker",
                    model_serving_env=worker_env,
                    local_stop_seconds=30,
                )
            )
            annotation = create_annotation(
                AnnotationSettings(**common, db_schema=schemas["an"], auth_url=dataset_url)
            )
            billing = create_billing(
                BillingSettings(
                    **common,
                    db_schema=schemas["bi"],
                    auth_url=dataset_url,
                    charge_interval_seconds=1.0,
                )
            )
            model_serving = create_model_serving(ms)
            apps += [router, model_serving, annotation, billing]
            urls = {}
            for name, app in (
                ("router", router),
                ("ms", model_serving),
                ("annotation", annotation),
                ("billing", billing),
            ):
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
            [*names, *(f"{q}.dlq" for q in names)],
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


async def test_uploaded_digits_are_prelabelled_reviewed_billed_and_the_service_idles_at_zero(
    stack: RunningStack,
) -> None:
    recorder = Recorder()
    options = DemoOptions(
        images=IMAGES,
        deadline_s=60,
        cooldown_s=2,
        drain_s=2,
        scale_down_timeout_s=30,
        poll_s=0.2,
        approve=5,
        correct=1,
        budget=Decimal("5.00"),
    )

    result = await DemoFlow(stack.endpoints, options, recorder).run()

    assert len(recorder.steps) == 8
    assert recorder.uploads == ["uploaded"] * IMAGES
    assert result.uploaded == IMAGES
    # The service idled at zero, woke for the work, predicted everything once.
    assert result.replicas_at_deploy == 0
    assert result.executions["success"] == IMAGES, result.executions
    assert sum(result.executions.values()) == IMAGES
    assert result.cold_start_executions >= 1
    assert result.cold_start_s is not None
    assert result.cold_start_s > 0
    assert max(s.actual_replicas for s in recorder.snapshots) == 1
    # One classification per image, stored and fed into the task.
    assert result.annotations == IMAGES
    assert result.compared == IMAGES
    # The first held-out digits: the catalog model gets 9 of 10 of these right.
    assert result.correct >= 8, result.confusions
    assert result.task_progress["total"] == IMAGES
    assert result.task_progress["counts"] == {
        "pending-review": IMAGES - 6,
        "approved": 5,
        "corrected": 1,
        "discarded": 0,
    }
    assert result.acceptance_rate == pytest.approx(5 / 6)
    # Billed from the replica's own start/stop events; the budget went down by the cost.
    assert result.predictions == IMAGES
    assert result.runtime_seconds > 0
    assert result.cost > 0
    assert Decimal(str(result.budget["spent"])) == result.cost
    # Back at zero after the cooldown.
    assert recorder.scaling_seen[-1] == (0, 0, 0)
    assert result.scaled_to_zero_s is not None
