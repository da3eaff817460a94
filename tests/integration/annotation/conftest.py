"""An annotation service running in-process against the real PostgreSQL and RabbitMQ,
with API keys checked by the session's real dataset service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from annotation_service.app import create_app
from annotation_service.settings import Settings
from common.contracts import (
    AddTaskItem,
    ItemCreated,
    ItemSnapshot,
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
)
from common.contracts.trigger_router import Origin
from common.envelope import CloudEvent, make_event
from common.service import ServiceRuntime, runtime_of
from common.testing.broker import EventProbe, publish_raw
from common.testing.servers import app_in_process
from common.topology import ANNOTATION, DATASET, MODEL_SERVING
from tests.conftest import AuthService


@dataclass
class AnnotationService:
    """The running app, an HTTP client holding a project key and an event probe."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    amqp_url: str
    project_id: str
    api_key: str
    events: EventProbe
    ds1: str = ""
    """A dataset of the project (made at the real dataset service: tasks and exports check)."""
    ds2: str = ""
    """Another dataset of the project."""

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def exchange(self, producer: str) -> str:
        return f"{self.settings.topology_prefix}{producer}.events"

    async def publish(self, event: CloudEvent[Any]) -> None:
        """Publish an envelope as its producer would."""
        producer = MODEL_SERVING if event.routing_key.startswith("prediction.") else DATASET
        await publish_raw(
            self.amqp_url, self.exchange(producer), event.routing_key, event.to_json_bytes()
        )

    async def send(self, command: CloudEvent[Any]) -> None:
        """Publish a command to the annotation service as a pipeline's task node would."""
        await publish_raw(
            self.amqp_url,
            f"{self.settings.topology_prefix}{ANNOTATION}.commands",
            command.routing_key,
            command.to_json_bytes(),
        )

    def queue(self, handler: str) -> str:
        """The name of one of the service's consumer queues."""
        return f"{self.settings.topology_prefix}{ANNOTATION}.{handler}"

    async def count(self, sql: str, *args: object) -> int:
        value: int = await self.runtime.pool.fetchval(sql, *args)
        return value


def boxes(n: int, label: str = "cat", offset: float = 0.0) -> list[PredictedAnnotation]:
    """``n`` box annotations at distinct places."""
    return [
        PredictedAnnotation(
            type="box",
            label=label,
            coordinates=[[offset + i, offset + i], [offset + i + 10, offset + i + 5]],
            confidence=0.5 + i / (2 * max(n, 1)),
        )
        for i in range(n)
    ]


def prediction(
    project_id: str,
    dataset_id: str,
    item_id: str,
    annotations: list[PredictedAnnotation],
    *,
    service_id: str = "svc_a",
    version: str = "1",
    execution_id: str | None = None,
    origin: Origin | None = None,
) -> CloudEvent[Any]:
    """A ``prediction.completed.v1`` envelope as model-serving publishes it."""
    now = datetime.now(UTC)
    execution = execution_id or f"exe_{uuid.uuid4().hex[:12]}"
    return make_event(
        PredictionCompleted(
            execution_id=execution,
            service_id=service_id,
            project_id=project_id,
            dataset_id=dataset_id,
            item_id=item_id,
            replica_id="rep_1",
            model=ModelRef(name="detector", model_id="mdl_1", version=version),
            annotations=annotations,
            started_at=now,
            finished_at=now,
            origin=origin,
        ),
        source="/services/model-serving",
        subject=item_id,
        correlationid=execution,
    )


def add_task_item(
    project_id: str,
    task_id: str,
    dataset_id: str,
    item_id: str,
    annotations: list[PredictedAnnotation],
    *,
    execution_id: str,
    pipeline_execution_id: str | None = None,
    auto_accept: bool = False,
    node_id: str = "task",
) -> CloudEvent[Any]:
    """An ``add_task_item.v1`` envelope as the router's task node sends it."""
    return make_event(
        AddTaskItem(
            project_id=project_id,
            task_id=task_id,
            dataset_id=dataset_id,
            item_id=item_id,
            pipeline_id="pipe_1",
            pipeline_execution_id=pipeline_execution_id or f"pex_{uuid.uuid4().hex[:12]}",
            node_id=node_id,
            execution_id=execution_id,
            service_id="svc_a",
            model=ModelRef(name="detector", model_id="mdl_1", version="1"),
            annotations=annotations,
            auto_accept=auto_accept,
        ),
        source="/services/trigger-router",
        subject=item_id,
        correlationid=execution_id,
    )


def item_created(
    project_id: str, dataset_id: str, item_id: str, name: str, width: int, height: int
) -> CloudEvent[Any]:
    """An ``item.created.v1`` envelope as the dataset service publishes it."""
    now = datetime.now(UTC)
    snapshot = ItemSnapshot(
        id=item_id,
        project_id=project_id,
        dataset_id=dataset_id,
        name=name,
        filename=f"/{name}",
        dir="/",
        created_at=now,
        updated_at=now,
        metadata={"system": {"mimetype": "image/png", "width": width, "height": height}},
    )
    return make_event(ItemCreated(item=snapshot), source="/services/dataset", subject=item_id)


@pytest.fixture
async def annotation_service(
    database_url: str,
    amqp_url: str,
    pg_schema: str,
    topology_prefix: str,
    auth_service: AuthService,
) -> AsyncIterator[AnnotationService]:
    settings = Settings(
        amqp_url=amqp_url,  # type: ignore[arg-type]
        database_url=database_url,  # type: ignore[arg-type]
        db_schema=pg_schema,
        topology_prefix=topology_prefix,
        auth_url=auth_service.url,
        outbox_poll_seconds=0.2,
        delivery_limit=3,
    )
    app = create_app(settings)
    project_id, api_key = await auth_service.new_project()
    datasets = [await _new_dataset(auth_service.url, api_key) for _ in range(2)]
    async with app_in_process(
        app,
        amqp_url=amqp_url,
        events_exchange=f"{topology_prefix}{ANNOTATION}.events",
        base_url="http://annotation",
        exchanges=[
            f"{topology_prefix}{ANNOTATION}.dlx",
            f"{topology_prefix}{MODEL_SERVING}.events",
            f"{topology_prefix}{DATASET}.events",
            f"{topology_prefix}{ANNOTATION}.commands",
        ],
    ) as (http, events):
        yield AnnotationService(
            app, http, settings, amqp_url, project_id, api_key, events, *datasets
        )


async def _new_dataset(dataset_url: str, api_key: str) -> str:
    async with httpx.AsyncClient(base_url=dataset_url) as http:
        created = await http.post(
            "/datasets",
            json={"name": f"d-{uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    created.raise_for_status()
    return str(created.json()["id"])
