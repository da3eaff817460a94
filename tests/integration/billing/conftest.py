"""A billing service running in-process against the real PostgreSQL and RabbitMQ, with
API keys checked by the session's real dataset service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from billing_service.app import create_app
from billing_service.settings import Settings
from common.contracts import ReplicaStarted, ReplicaStopped
from common.envelope import CloudEvent, make_event
from common.service import ServiceRuntime, runtime_of
from common.testing.broker import EventProbe, publish_raw
from common.testing.servers import app_in_process
from common.topology import ANNOTATION, BILLING, MODEL_SERVING
from tests.conftest import AuthService

RATES = {"cpu-small": "0.01", "gpu-t4": "0.1"}


@dataclass
class BillingService:
    """The running app, an HTTP client holding a project key and a budget-event probe."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    amqp_url: str
    project_id: str
    api_key: str
    events: EventProbe

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    async def publish(self, event: CloudEvent[Any], producer: str = MODEL_SERVING) -> None:
        """Publish an envelope on its producer's exchange (model-serving's by default), as
        that producer does."""
        await publish_raw(
            self.amqp_url,
            f"{self.settings.topology_prefix}{producer}.events",
            event.routing_key,
            event.to_json_bytes(),
        )

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params, headers=self.auth())
        assert response.status_code == 200, response.text
        return response.json()


def replica_started(
    project_id: str, replica: str, at: datetime, kind: str = "cpu-small", service: str = "svc_a"
) -> CloudEvent[Any]:
    return make_event(
        ReplicaStarted(
            replica_id=replica,
            service_id=service,
            project_id=project_id,
            instance_type=kind,
            started_at=at,
        ),
        source="/services/model-serving",
        subject=replica,
    )


def replica_stopped(
    project_id: str,
    replica: str,
    at: datetime,
    kind: str = "cpu-small",
    service: str = "svc_a",
    started_at: datetime | None = None,
) -> CloudEvent[Any]:
    return make_event(
        ReplicaStopped(
            replica_id=replica,
            service_id=service,
            project_id=project_id,
            instance_type=kind,
            stopped_at=at,
            started_at=started_at,
        ),
        source="/services/model-serving",
        subject=replica,
    )


BILLING_ADMIN_KEY = "billing-tests-admin-key"


@pytest.fixture
async def billing_service(
    database_url: str,
    amqp_url: str,
    pg_schema: str,
    topology_prefix: str,
    auth_service: AuthService,
) -> AsyncIterator[BillingService]:
    settings = Settings(
        amqp_url=amqp_url,  # type: ignore[arg-type]
        database_url=database_url,  # type: ignore[arg-type]
        db_schema=pg_schema,
        topology_prefix=topology_prefix,
        auth_url=auth_service.url,
        outbox_poll_seconds=0.2,
        rates=RATES,  # type: ignore[arg-type]
        charge_interval_seconds=0.2,
        admin_key=BILLING_ADMIN_KEY,  # type: ignore[arg-type]
    )
    app = create_app(settings)
    project_id, api_key = await auth_service.new_project()
    async with app_in_process(
        app,
        amqp_url=amqp_url,
        events_exchange=f"{topology_prefix}{BILLING}.events",
        base_url="http://billing",
        exchanges=[
            f"{topology_prefix}{BILLING}.dlx",
            f"{topology_prefix}{MODEL_SERVING}.events",
            f"{topology_prefix}{ANNOTATION}.events",
        ],
    ) as (http, events):
        yield BillingService(app, http, settings, amqp_url, project_id, api_key, events)
