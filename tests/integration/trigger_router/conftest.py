"""A trigger-router running in-process against the real PostgreSQL and RabbitMQ, with
API keys checked by a real dataset service (``auth_service``).

Tests play the other services' parts on the broker: they publish item events as the
dataset service does, ``service.deployed.v1`` / outcomes as model-serving does (and
declare the predict queue as model-serving does on deploy), budgets as billing does.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from common.contracts import (
    ItemCreated,
    ItemMetadataUpdated,
    ItemSnapshot,
    ServiceDeployed,
)
from common.envelope import CloudEvent, make_event
from common.service import ServiceRuntime, runtime_of
from common.testing.broker import delete_names, publish_raw
from common.testing.waits import wait_until
from common.topology import BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology
from tests.conftest import AuthService
from trigger_router_service.adapters.scalers import ScalerBackend
from trigger_router_service.app import create_app
from trigger_router_service.deps import Deps as RouterDeps
from trigger_router_service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
IDLE_WORKER = "tests.integration.trigger_router.idle_worker"


def item_snapshot(project_id: str, **overrides: Any) -> ItemSnapshot:
    """An item as the dataset service would describe it."""
    now = datetime.now(UTC)
    item_id = overrides.pop("id", f"itm_{uuid.uuid4().hex}")
    name = overrides.pop("name", "a.png")
    directory = overrides.pop("dir", "/")
    fields: dict[str, Any] = {
        "id": item_id,
        "project_id": project_id,
        "dataset_id": overrides.pop("dataset_id", "ds_test"),
        "name": name,
        "filename": f"/{name}" if directory == "/" else f"{directory}/{name}",
        "dir": directory,
        "created_at": now,
        "updated_at": now,
        "metadata": overrides.pop(
            "metadata",
            {"system": {"mimetype": "image/png", "size": 10, "sha256": "0" * 64}, "user": {}},
        ),
    }
    fields.update(overrides)
    return ItemSnapshot(**fields)


@dataclass
class Router:
    """One running router app plus helpers that play the other services."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    amqp_url: str
    auth_service: AuthService
    project_id: str = ""
    api_key: str = ""
    declared_queues: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    @property
    def topology(self) -> Topology:
        return self.runtime.topology

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    # ------------------------------------------------------------ other services' parts

    async def publish(self, producer: str, data: BaseModel, **envelope: Any) -> CloudEvent[Any]:
        """Publish an event on ``producer``'s exchange, as that service would."""
        event = make_event(data, source=f"/services/{producer}", **envelope)
        await self.publish_raw(producer, event.routing_key, event.to_json_bytes())
        return event

    async def publish_raw(self, producer: str, routing_key: str, body: bytes) -> None:
        await publish_raw(self.amqp_url, self.topology.events_exchange(producer), routing_key, body)

    async def item_event(
        self, item: ItemSnapshot, kind: type[BaseModel] = ItemCreated, **envelope: Any
    ) -> CloudEvent[Any]:
        """Publish an item event as the dataset service does."""
        return await self.publish(DATASET, kind(item=item), **envelope)

    async def metadata_updated(self, item: ItemSnapshot, **user: Any) -> ItemSnapshot:
        """Change the item's user metadata and publish ``item.metadata_updated.v1``."""
        metadata = {**item.metadata, "user": {**item.metadata.get("user", {}), **user}}
        changed = item.model_copy(update={"metadata": metadata, "updated_at": datetime.now(UTC)})
        await self.publish(DATASET, ItemMetadataUpdated(item=changed))
        return changed

    async def deploy(
        self,
        service_id: str | None = None,
        *,
        project_id: str | None = None,
        declare_queue: bool = True,
        **settings: Any,
    ) -> str:
        """Announce a ready model service (and declare its predict queue, as model-serving
        does on deploy); wait until the router knows it."""
        service_id = service_id or f"svc_{uuid.uuid4().hex[:12]}"
        project = project_id or self.project_id
        if declare_queue:
            await self.declare_predict_queue(service_id)
        await self.publish(
            MODEL_SERVING,
            ServiceDeployed(
                service_id=service_id,
                project_id=project,
                model_id="mdl_test",
                status=settings.pop("status", "ready"),
                **settings,
            ),
        )
        await self.wait_service(service_id, project)
        return service_id

    async def wait_service(self, service_id: str, project_id: str | None = None) -> None:
        repo = self.runtime.deps_as(RouterDeps).repo

        async def known() -> bool:
            return bool(await repo.service_in_project(project_id or self.project_id, service_id))

        await wait_until(known, timeout=10, message=f"router knows {service_id}")

    async def declare_predict_queue(self, service_id: str) -> str:
        """Declare ``predict.<service_id>`` as model-serving does on deploy."""
        name = self.topology.predict_queue(service_id)
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                self.topology.predict_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            queue = await channel.declare_queue(
                name, durable=True, arguments=self.topology.queue_arguments(MODEL_SERVING, name)
            )
            await queue.bind(exchange, routing_key=service_id)
        finally:
            await connection.close()
        self.declared_queues.append(name)
        return name

    async def take(self, queue: str, count: int, timeout: float = 10) -> list[Taken]:
        """Take ``count`` messages off ``queue`` (removed at delivery), waiting up to ``timeout``."""
        got: list[Taken] = []
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)

            async def fetch() -> bool:
                # Auto-ack: an explicit ack still in flight when the connection closes
                # would put the message back in the queue.
                message = await declared.get(no_ack=True, fail=False)
                if message is not None:
                    try:
                        body = json.loads(message.body)
                    except ValueError:
                        body = {"raw": message.body.decode(errors="replace")}
                    got.append(
                        Taken(
                            body,
                            message.routing_key or "",
                            dict(message.headers),
                            message.message_id,
                        )
                    )
                return len(got) >= count

            await wait_until(fetch, timeout=timeout, interval=0.02, message=f"{count} in {queue}")
        finally:
            await connection.close()
        return got

    async def predicts(self, service_id: str, count: int, timeout: float = 10) -> list[Taken]:
        """Take ``count`` predict requests from the service's queue."""
        return await self.take(self.topology.predict_queue(service_id), count, timeout)

    async def dead_letters(self, handler: str, count: int) -> list[Taken]:
        """Take ``count`` messages from a router queue's dead-letter queue."""
        queue = self.topology.dead_letter_queue(self.topology.queue(TRIGGER_ROUTER, handler))
        return await self.take(queue, count)

    async def queue_depth(self, name: str) -> int:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await connection.close()

    # ------------------------------------------------------------ the router's API

    async def create_trigger(
        self,
        service_id: str,
        *,
        name: str | None = None,
        actions: list[str] | None = None,
        mode: str = "Always",
        filter: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/triggers",
            json={
                "name": name or f"t-{uuid.uuid4().hex[:8]}",
                "spec": {
                    "resource": "Item",
                    "actions": actions or ["Created"],
                    "execution_mode": mode,
                    "filter": filter or {},
                    "operation": {"type": "predict", "service_id": service_id},
                },
            },
            headers=self.auth(key),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def executions(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/executions", params={"page_size": 500, **params}, headers=self.auth()
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def wait_executions(
        self, count: int, *, timeout: float = 10, **params: Any
    ) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` executions match ``params``; return them."""
        found: list[dict[str, Any]] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.executions(**params)
            return len(found) >= count

        await wait_until(enough, timeout=timeout, message=f"{count} executions {params}")
        assert len(found) == count, found
        return found

    def handled(self, handler: str = "on_item_event") -> float:
        """Messages ``handler`` finished so far (any outcome but an error); the counter is
        process-wide, so compare with a value read before publishing."""
        metric = self.runtime.metrics.messages
        return float(
            sum(
                metric.labels(handler, o)._value.get()
                for o in ("ok", "duplicate", "dead_lettered", "stale")
            )
        )

    async def wait_handled(
        self, target: float, timeout: float = 10, handler: str = "on_item_event"
    ) -> None:
        """Wait until :meth:`handled` reaches ``target``."""

        async def done() -> bool:
            return self.handled(handler) >= target

        await wait_until(done, timeout=timeout, message=f"{target} item events handled")


@dataclass(frozen=True)
class Taken:
    """A message taken from a queue."""

    body: dict[str, Any]
    routing_key: str
    headers: dict[str, Any]
    message_id: str | None


RouterFactory = Callable[..., contextlib.AbstractAsyncContextManager[Router]]


def router_settings(
    database_url: str, amqp_url: str, schema: str, prefix: str, auth_url: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "db_schema": schema,
        "topology_prefix": prefix,
        "auth_url": auth_url,
        "outbox_poll_seconds": 0.2,
        "autoscaler_enabled": False,
        "reconcile_seconds": 0.25,
        "leader_retry_seconds": 0.25,
        "local_worker_module": IDLE_WORKER,
        "local_stop_seconds": 10,
        "model_serving_env": {"PYTHONPATH": str(REPO_ROOT)},
        # One attempt: the tests of failures see them close at once (retries: opt in).
        "prediction_max_attempts": 1,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def router_factory(
    database_url: str,
    amqp_url: str,
    pg_schema: str,
    topology_prefix: str,
    auth_service: AuthService,
) -> AsyncIterator[RouterFactory]:
    """``async with router_factory(**settings) as router``: a router on this test's schema
    and prefix; several may run at once (they share the schema, as replicas do)."""
    project_id, api_key = await auth_service.new_project()
    queues: set[str] = set()

    @contextlib.asynccontextmanager
    async def start(
        backend: ScalerBackend | None = None, **overrides: Any
    ) -> AsyncIterator[Router]:
        settings = router_settings(
            database_url, amqp_url, pg_schema, topology_prefix, auth_service.url, **overrides
        )
        app = create_app(settings, backend=backend)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://trigger-router"
            ) as http,
        ):
            router = Router(app, http, settings, amqp_url, auth_service, project_id, api_key)
            try:
                yield router
            finally:
                queues.update(router.runtime.consumer_queues)
                queues.update(router.declared_queues)

    yield start
    p = topology_prefix
    await delete_names(
        amqp_url,
        [*queues, *(f"{q}.dlq" for q in queues)],
        [
            f"{p}{DATASET}.events",
            f"{p}{MODEL_SERVING}.events",
            f"{p}{BILLING}.events",
            f"{p}{TRIGGER_ROUTER}.events",
            f"{p}{TRIGGER_ROUTER}.dlx",
            f"{p}{MODEL_SERVING}.predict",
        ],
    )


@pytest.fixture
async def router(router_factory: RouterFactory) -> AsyncIterator[Router]:
    """A router without the autoscaler."""
    async with router_factory() as running:
        yield running
