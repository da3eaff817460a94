"""What the in-process services of ``tests/integration/<service>/conftest.py`` share."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import httpx
from fastapi import FastAPI

from common.service import ServiceRuntime, runtime_of
from common.testing.broker import EventProbe
from common.testing.servers import app_in_process


class ServiceUnderTest:
    """``runtime`` and ``auth`` of a service app a test runs in this process, for the
    dataclass that holds it (its ``app`` and its project's ``api_key``)."""

    app: FastAPI
    api_key: str

    @property
    def runtime(self) -> ServiceRuntime:
        """The running app's runtime (pool, broker, topology ...)."""
        return runtime_of(self.app)

    def auth(self, key: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header of ``key`` (the project's own key by default)."""
        return {"Authorization": f"Bearer {key or self.api_key}"}


def base_settings(
    *, database_url: str, amqp_url: str, schema: str, prefix: str, auth_url: str
) -> dict[str, Any]:
    """The settings every service under test starts from: this test's servers, schema and
    topology prefix, keys checked at ``auth_url``, the outbox polled every 0.2 s."""
    return {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "db_schema": schema,
        "topology_prefix": prefix,
        "auth_url": auth_url,
        "outbox_poll_seconds": 0.2,
    }


def serve_in_process(
    app: FastAPI, *, amqp_url: str, prefix: str, service: str, exchanges: Sequence[str]
) -> contextlib.AbstractAsyncContextManager[tuple[httpx.AsyncClient, EventProbe]]:
    """``app_in_process`` for ``service``: a probe on its events exchange, its HTTP client
    at ``http://<service>``; its dead-letter exchange and ``exchanges`` deleted after."""
    return app_in_process(
        app,
        amqp_url=amqp_url,
        events_exchange=f"{prefix}{service}.events",
        base_url=f"http://{service}",
        exchanges=[f"{prefix}{service}.dlx", *exchanges],
    )
