"""The five real services on loopback ports, in a thread of their own, for sync tests.

Schemathesis's pytest tests are synchronous and call over HTTP with ``requests``, so the
apps cannot share the test's event loop: :class:`ThreadedStack` runs them in an event
loop on another thread (the wiring of ``tests/integration/client/stack.py``: fresh
PostgreSQL schemas, one topology prefix, one bucket, keys checked at the dataset
service) and gives two projects with keys. The router's autoscaler is off: fuzzed
requests must not start model-serving workers on a two-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg
import httpx

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.s3 import delete_bucket, ensure_bucket, s3_client
from common.settings import S3SettingsMixin
from common.testing.servers import free_port, serve_app
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from prelabel_client.endpoints import Service
from tests.integration.model_serving.conftest import ms_settings
from trigger_router_service.app import create_app as create_router
from trigger_router_service.settings import Settings as RouterSettings

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
        self._options: dict[str, Any] = {
            "database_url": database_url,
            "amqp_url": amqp_url,
            "s3_settings": s3_settings,
            "triton_url": triton_url,
            "triton_grpc_url": triton_grpc_url,
        }
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
        async with _five_services(**self._options) as urls:
            self._urls = urls
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


@contextlib.asynccontextmanager
async def _five_services(
    *,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> AsyncIterator[dict[Service, str]]:
    """Serve the five apps (fresh schemas, prefix, bucket; topology deleted at the end)."""
    base = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{base}_{name}" for name in ("ds", "tr", "ms", "an", "bi")}
    prefix = f"t{uuid.uuid4().hex[:10]}."
    bucket = f"t-fuzz-{uuid.uuid4().hex[:16]}"
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "topology_prefix": prefix,
        "outbox_poll_seconds": 0.5,
        "ephemeral_topology": True,
    }
    s3: dict[str, Any] = {
        "s3_endpoint_url": s3_settings.s3_endpoint_url,
        "s3_access_key": s3_settings.s3_access_key,
        "s3_secret_key": s3_settings.s3_secret_key,
        "s3_bucket": bucket,
    }
    urls: dict[Service, str] = {}
    async with s3_client(
        s3_settings.s3_endpoint_url, s3_settings.s3_access_key, s3_settings.s3_secret_key
    ) as blobs:
        await ensure_bucket(blobs, bucket)
        try:
            async with contextlib.AsyncExitStack() as running:
                dataset = create_dataset(
                    DatasetSettings(**common, **s3, db_schema=schemas["ds"], admin_key=ADMIN_KEY)
                )
                urls["dataset"] = await running.enter_async_context(serve_app(dataset))
                annotation_port = free_port()
                router = create_router(
                    RouterSettings(
                        **common,
                        db_schema=schemas["tr"],
                        auth_url=urls["dataset"],
                        annotation_url=f"http://127.0.0.1:{annotation_port}",
                        autoscaler_enabled=False,
                    )
                )
                model_serving = create_model_serving(
                    ms_settings(
                        database_url=database_url,
                        amqp_url=amqp_url,
                        s3=s3_settings,
                        bucket=bucket,
                        schema=schemas["ms"],
                        prefix=prefix,
                        auth_url=urls["dataset"],
                        triton_http_url=triton_url,
                        triton_grpc_url=triton_grpc_url,
                        ephemeral_topology=True,
                    )
                )
                annotation = create_annotation(
                    AnnotationSettings(**common, db_schema=schemas["an"], auth_url=urls["dataset"])
                )
                billing = create_billing(
                    BillingSettings(**common, db_schema=schemas["bi"], auth_url=urls["dataset"])
                )
                urls["annotation"] = await running.enter_async_context(
                    serve_app(annotation, annotation_port)
                )
                urls["trigger-router"] = await running.enter_async_context(serve_app(router))
                urls["model-serving"] = await running.enter_async_context(serve_app(model_serving))
                urls["billing"] = await running.enter_async_context(serve_app(billing))
                yield urls
        finally:
            conn = await asyncpg.connect(database_url)
            try:
                for schema in schemas.values():
                    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()
            await delete_bucket(blobs, bucket)
