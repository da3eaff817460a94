"""Scale from zero end to end with the real pieces: the trigger-router (autoscaler,
local backend) starts real model-serving worker processes, which load a real model
on the real Triton, predict on blobs in the real S3 and report back over RabbitMQ.

model-serving runs in-process (its API deploys the service, declares the queue and
announces ``service.deployed.v1``); the model is model-serving's test "colour"
classifier (a Triton Python-backend model registered through BYOM), which loads in
about a second, so the cold start here is mostly process start and model load.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from common.contracts import BudgetExhausted, BudgetRestored, ItemCreated, ItemSnapshot
from common.s3 import s3_client
from common.settings import S3SettingsMixin, environment_of
from common.testing.broker import probe_exchange
from common.testing.waits import wait_until
from common.topology import BILLING, MODEL_SERVING, TRIGGER_ROUTER
from model_serving_service.app import create_app as create_model_serving
from tests.conftest import AuthService
from tests.integration.model_serving.conftest import (
    COLOR_SPEC,
    ModelServingService,
    _cleanup,
    ms_settings,
    register_color_model,
    solid,
)
from tests.integration.trigger_router.conftest import Router, RouterFactory
from trigger_router_service import metrics
from trigger_router_service.adapters.scalers import LocalScaler
from trigger_router_service.deps import Deps as RouterDeps
from trigger_router_service.usecases.autoscaling import Autoscaler

WORKER = "model_serving_service.worker"


@dataclass
class Stack:
    """A router and a model-serving sharing one project, broker prefix and bucket."""

    router: Router
    ms: ModelServingService

    @property
    def autoscaler(self) -> Autoscaler:
        scaler = self.router.runtime.deps_as(RouterDeps).autoscaler
        assert scaler is not None
        return scaler

    @property
    def backend(self) -> LocalScaler:
        backend = self.autoscaler.backend
        assert isinstance(backend, LocalScaler)
        return backend

    async def deploy(self, **scaling: Any) -> str:
        """Register the colour model, deploy it, wait until both services see it ready."""
        options = {k: scaling.pop(k) for k in list(scaling) if k in {"sleep_execute"}}
        model = await register_color_model(self.ms, spec=scaling.pop("spec", COLOR_SPEC), **options)
        service = await self.ms.deploy(model["id"], **scaling)
        await self.ms.wait_status(service["id"], "ready", timeout=60)

        async def ready() -> bool:
            state = await self.router.http.get(
                f"/services/{service['id']}", headers=self.router.auth()
            )
            return state.status_code == 200 and state.json()["status"] == "ready"

        await wait_until(ready, timeout=15, message="router sees the service ready")
        return str(service["id"])

    async def put_items(self, count: int) -> list[ItemSnapshot]:
        """Store ``count`` red images in the bucket, as the dataset service does."""
        return [
            (await self.ms.put_item(solid((200 + n % 50, 0, 0)), "image/png")).model_copy(
                update={"name": f"{n}.png"}
            )
            for n in range(count)
        ]

    async def publish_items(self, items: list[ItemSnapshot]) -> list[str]:
        """Publish ``item.created.v1`` for each item."""
        for item in items:
            await self.router.publish("dataset", ItemCreated(item=item))
        return [item.id for item in items]

    async def items(self, count: int) -> list[str]:
        """Store ``count`` red images and publish ``item.created.v1`` for each."""
        return await self.publish_items(await self.put_items(count))

    async def replicas(self, service_id: str) -> tuple[int, int]:
        state = (
            await self.router.http.get(f"/services/{service_id}", headers=self.router.auth())
        ).json()
        return state["desired_replicas"], state["actual_replicas"]

    async def wait_replicas(
        self, service_id: str, desired: int, actual: int, timeout: float
    ) -> None:
        async def reached() -> bool:
            return await self.replicas(service_id) == (desired, actual)

        await wait_until(
            reached, timeout=timeout, interval=0.1, message=f"{desired}/{actual} replicas"
        )

    async def all_succeeded(self, count: int, timeout: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def done() -> bool:
            nonlocal found
            found = await self.router.executions(status="success")
            return len(found) >= count

        await wait_until(done, timeout=timeout, interval=0.1, message=f"{count} successes")
        return found


@pytest.fixture
async def stack(
    router_factory: RouterFactory,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    topology_prefix: str,
    triton_url: str,
    triton_grpc_url: str,
    auth_service: AuthService,
) -> AsyncIterator[Stack]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    settings = ms_settings(
        database_url=database_url,
        amqp_url=amqp_url,
        s3=s3_settings,
        bucket=s3_bucket,
        schema=schema,
        prefix=topology_prefix,
        auth_url=auth_service.url,
        triton_http_url=triton_url,
        triton_grpc_url=triton_grpc_url,
        delivery_limit=5,
    )
    # What the local backend passes to each replica: model-serving's settings.
    worker_env = environment_of(settings)
    app = create_model_serving(settings)
    try:
        async with (
            router_factory(
                autoscaler_enabled=True,
                reconcile_seconds=0.25,
                local_worker_module=WORKER,
                model_serving_env=worker_env,
                local_stop_seconds=30,
            ) as router,
            s3_client(
                s3_settings.s3_endpoint_url, s3_settings.s3_access_key, s3_settings.s3_secret_key
            ) as s3,
            probe_exchange(amqp_url, f"{topology_prefix}{MODEL_SERVING}.events") as events,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://model-serving", timeout=120
            ) as http,
        ):
            ms = ModelServingService(
                app, http, settings, router.project_id, router.api_key, events, s3, auth_service
            )
            yield Stack(router, ms)
    finally:
        await _cleanup(settings, database_url, schema, triton_url, amqp_url)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def test_a_matching_item_wakes_a_service_at_zero_which_predicts_then_scales_to_zero(
    stack: Stack,
) -> None:
    router = stack.router
    service = await stack.deploy(max_replicas=1, cooldown_seconds=2, drain_seconds=5)
    await router.create_trigger(service, filter={"metadata.system.mimetype": "image/*"})
    assert await stack.replicas(service) == (0, 0)
    scaled = router.topology.events_exchange(TRIGGER_ROUTER)

    async with probe_exchange(router.amqp_url, scaled, "service.scaled.v1") as probe:
        items = await stack.put_items(1)
        wakes = metrics.WAKE_LATENCY._sum.get()
        started = time.monotonic()
        [item_id] = await stack.publish_items(items)
        [up] = await probe.wait_for(1, timeout=10)
        announced_after = time.monotonic() - started
        in_router = metrics.WAKE_LATENCY._sum.get() - wakes
        [execution] = await stack.all_succeeded(1, timeout=60)
        predicted_after = time.monotonic() - started
        down = (await probe.wait_for(2, timeout=30))[-1]
        await stack.wait_replicas(service, 0, 0, timeout=30)

    assert up.body["data"]["reason"] == "work-arrived"
    assert down.body["data"]["reason"] == "cooldown"
    assert execution["item_id"] == item_id
    assert execution["cold_start"] is True
    assert execution["replica_id"] is not None
    outcome = stack.ms.outcomes(execution["id"])
    assert [o["type"] for o in outcome] == ["prelabel.prediction.completed.v1"]
    [annotation] = outcome[0]["data"]["annotations"]
    assert annotation["label"] == "red"
    started_events = stack.ms.events.of("replica.started.v1")
    stopped_events = await stack.ms.events.wait_for(1, routing_key="replica.stopped.v1")
    assert [e.body["data"]["replica_id"] for e in started_events] == [execution["replica_id"]]
    assert stopped_events[0].body["data"]["replica_id"] == execution["replica_id"]
    assert metrics.COLD_START._sum.get() > 0
    # Item event published -> routed -> NOTIFY -> leader -> replica started ->
    # service.scaled.v1 through the outbox and back to this probe.
    assert announced_after < 1.0, announced_after
    print(
        f"\nwake-up: NOTIFY to replica requested {in_router * 1000:.1f} ms; item event to "
        f"service.scaled.v1 seen {announced_after * 1000:.0f} ms; first prediction after "
        f"{predicted_after:.2f} s (process start and model load included)"
    )


async def test_killing_a_replica_mid_batch_loses_no_execution(stack: Stack) -> None:
    router = stack.router
    count = 16
    service = await stack.deploy(
        max_replicas=1,
        cooldown_seconds=30,
        concurrency=4,
        drain_seconds=5,
        spec={**COLOR_SPEC, "max_batch_size": 2},
        sleep_execute=0.15,
    )
    await router.create_trigger(service)

    await stack.items(count)
    await stack.all_succeeded(3, timeout=60)
    [first] = stack.backend.replicas(service)
    os.kill(first.process.pid, signal.SIGKILL)

    async def replaced() -> bool:
        now = stack.backend.replicas(service)
        return len(now) == 1 and now[0].replica_id != first.replica_id

    await wait_until(replaced, timeout=10, message="killed replica replaced")
    succeeded = await stack.all_succeeded(count, timeout=90)

    assert len(succeeded) == count
    assert len({e["item_id"] for e in succeeded}) == count
    replicas = {e["replica_id"] for e in succeeded}
    assert len(replicas) == 2, replicas  # some by the killed replica, the rest by its successor
    completions: dict[str, int] = {}
    for message in stack.ms.events.of("prediction.completed.v1"):
        execution_id = message.body["data"]["execution_id"]
        completions[execution_id] = completions.get(execution_id, 0) + 1
    # Redelivered requests the dead replica had already answered get no second outcome.
    assert sorted(completions.values()) == [1] * count
    counts = (await router.http.get("/executions/counts", headers=router.auth())).json()
    assert counts["success"] == count
    assert counts["failed"] == 0


async def test_an_exhausted_budget_holds_work_until_a_top_up(stack: Stack) -> None:
    router = stack.router
    service = await stack.deploy(max_replicas=1, cooldown_seconds=1, drain_seconds=5)
    await router.create_trigger(service)
    at = datetime.now(UTC)
    budget = {"project_id": router.project_id, "budget": Decimal(5), "spent": Decimal(5)}
    base = router.handled("on_budget_event")
    await router.publish(BILLING, BudgetExhausted(**budget, at=at), time=at)
    await router.wait_handled(base + 1, handler="on_budget_event")

    await stack.items(2)
    waiting = await router.wait_executions(2, status="waiting-for-budget")
    passes = stack.autoscaler.reconciles
    await wait_until(lambda: _true(stack.autoscaler.reconciles >= passes + 4), message="reconciles")
    assert await stack.replicas(service) == (0, 0)

    restored = datetime.now(UTC)
    await router.publish(BILLING, BudgetRestored(**budget, at=restored), time=restored)
    succeeded = await stack.all_succeeded(2, timeout=60)
    assert {e["id"] for e in succeeded} == {e["id"] for e in waiting}
    await stack.wait_replicas(service, 0, 0, timeout=30)


async def _true(value: bool) -> bool:
    return value
