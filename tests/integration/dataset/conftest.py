"""A dataset service running in-process against the real PostgreSQL, RabbitMQ and S3."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from common.s3 import s3_client
from common.service import ServiceRuntime, runtime_of
from common.settings import S3SettingsMixin
from common.testing.broker import EventProbe
from common.testing.servers import app_in_process
from common.topology import DATASET
from dataset_service.app import create_app
from dataset_service.settings import Settings

ADMIN_KEY = "test-admin-key"


@dataclass
class DatasetService:
    """The running app, an HTTP client holding a project key, and an item-event probe."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    project_id: str
    api_key: str
    events: EventProbe

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    async def new_project(self, name: str) -> tuple[str, str]:
        """Create another project and a key for it."""
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        project = (await self.http.post("/projects", json={"name": name}, headers=admin)).json()
        key = await self.http.post(f"/projects/{project['id']}/api-keys", json={}, headers=admin)
        return project["id"], key.json()["key"]

    async def create_dataset(self, name: str = "photos", key: str | None = None) -> str:
        response = await self.http.post("/datasets", json={"name": name}, headers=self.auth(key))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def upload(
        self,
        dataset_id: str,
        data: bytes,
        name: str = "a.png",
        *,
        directory: str = "/",
        metadata: str | None = None,
        key: str | None = None,
        form_name: str | None = None,
    ) -> httpx.Response:
        form = {"dir": directory}
        if form_name is not None:
            form["name"] = form_name
        if metadata is not None:
            form["metadata"] = metadata
        return await self.http.post(
            f"/datasets/{dataset_id}/items",
            files={"file": (name, data, "application/octet-stream")},
            data=form,
            headers=self.auth(key),
        )


def png_bytes(
    width: int = 8, height: int = 6, color: tuple[int, int, int] = (200, 10, 10)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 8, height: int = 6, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (seed % 256, (seed // 256) % 256, 7)).save(
        buffer, format="JPEG"
    )
    return buffer.getvalue()


def dataset_settings(
    database_url: str,
    amqp_url: str,
    s3: S3SettingsMixin,
    bucket: str,
    schema: str,
    prefix: str,
    **overrides: object,
) -> Settings:
    return Settings(
        amqp_url=amqp_url,  # type: ignore[arg-type]
        database_url=database_url,  # type: ignore[arg-type]
        db_schema=schema,
        topology_prefix=prefix,
        s3_endpoint_url=s3.s3_endpoint_url,
        s3_access_key=s3.s3_access_key,
        s3_secret_key=s3.s3_secret_key,
        s3_bucket=bucket,
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        max_upload_bytes=200_000,
        outbox_poll_seconds=0.2,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def dataset_settings_(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    pg_schema: str,
    topology_prefix: str,
) -> Settings:
    return dataset_settings(
        database_url, amqp_url, s3_settings, s3_bucket, pg_schema, topology_prefix
    )


@pytest.fixture
async def dataset_service(
    dataset_settings_: Settings, amqp_url: str
) -> AsyncIterator[DatasetService]:
    settings = dataset_settings_
    app = create_app(settings)
    prefix = settings.topology_prefix
    async with app_in_process(
        app,
        amqp_url=amqp_url,
        events_exchange=f"{prefix}{DATASET}.events",
        base_url="http://dataset",
        exchanges=[f"{prefix}{DATASET}.commands", f"{prefix}{DATASET}.dlx"],
    ) as (http, events):
        service = DatasetService(app, http, settings, "", "", events)
        service.project_id, service.api_key = await service.new_project("acme")
        yield service


@pytest.fixture
async def bucket_client(s3_settings: S3SettingsMixin) -> AsyncIterator[object]:
    async with s3_client(
        s3_settings.s3_endpoint_url,
        s3_settings.s3_access_key,
        s3_settings.s3_secret_key,
        s3_settings.s3_region,
    ) as client:
        yield client
