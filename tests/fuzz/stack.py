"""The five real services on loopback ports, in a thread of their own, for sync tests.

Schemathesis's pytest tests are synchronous and call over HTTP with ``requests``, so the
apps cannot share the test's event loop: :class:`ThreadedStack` runs them in an event
loop on another thread (the wiring of ``tests/stack_builder.py``: fresh PostgreSQL
schemas, one topology prefix, one bucket, keys checked at the dataset service) and
gives two projects with keys. The router's autoscaler is off: fuzzed requests must not
start model-serving workers on a two-core machine.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from common.settings import S3SettingsMixin
from prelabel_client.endpoints import Service
from tests.stack_builder import Servers, five_services

ADMIN_KEY = "fuzz-tests-admin-key"

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Project:
    """A project and one of its API keys."""

    id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass(frozen=True)
class FuzzStack:
    """Base URLs of the five services, the admin key, and two projects."""

    urls: dict[Service, str]
    admin_key: str
    alice: Project
    bob: Project

    def openapi(self, service: Service) -> dict[str, Any]:
        """The service's OpenAPI document, as it serves it."""
        response = httpx.get(f"{self.urls[service]}/openapi.json", timeout=30)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


class ThreadedStack:
    """``with ThreadedStack(...) as stack:`` the five services run until the block ends."""

    def __init__(
        self,
        *,
        database_url: str,
        amqp_url: str,
        s3_settings: S3SettingsMixin,
        triton_url: str,
        triton_grpc_url: str,
    ) -> None:
        self._servers = Servers(database_url, amqp_url, s3_settings, triton_url, triton_grpc_url)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._urls: dict[Service, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-stack", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with five_services(
            self._servers,
            admin_key=ADMIN_KEY,
            label="fuzz",
            outbox_poll_seconds=0.5,
            ephemeral_topology=True,
            # Fuzzed requests must not start model-serving workers on a two-core machine.
            overrides={"trigger-router": {"autoscaler_enabled": False}},
        ) as five:
            self._urls = five.urls
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FuzzStack:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the five services did not start within {START_TIMEOUT_S} s")
        if self._urls is None:
            raise RuntimeError("the five services failed to start") from self._error
        return FuzzStack(
            urls=self._urls,
            admin_key=ADMIN_KEY,
            alice=_new_project(self._urls["dataset"]),
            bob=_new_project(self._urls["dataset"]),
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=120)
        if self._error is not None and exc is None:
            raise RuntimeError("the five services failed while stopping") from self._error


def _new_project(dataset_url: str) -> Project:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=dataset_url, headers=admin, timeout=30) as http:
        created = http.post("/projects", json={"name": f"fuzz-{uuid.uuid4().hex[:8]}"})
        created.raise_for_status()
        project_id = str(created.json()["id"])
        key = http.post(f"/projects/{project_id}/api-keys", json={"name": "fuzz"})
        key.raise_for_status()
    return Project(project_id, str(key.json()["key"]))
