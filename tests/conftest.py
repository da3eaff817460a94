"""Shared fixtures. Real-server fixtures come from the common.testing.plugin pytest plugin.

``auth_service``: one dataset service per session, served over real HTTP, so the
other services' tests check API keys exactly as in production (``GET /whoami``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from common.s3 import ensure_bucket, s3_client
from common.settings import S3SettingsMixin
from common.testing.servers import serve_app

AUTH_ADMIN_KEY = "session-admin-key"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos suite last: its database restart and its load then come after the rest."""
    items.sort(key=lambda item: "tests/chaos/" in item.nodeid)


@dataclass
class AuthService:
    """A running dataset service used as the key authority."""

    url: str

    async def new_project(self, name: str | None = None) -> tuple[str, str]:
        """Create a project and an API key: ``(project_id, key)``."""
        admin = {"Authorization": f"Bearer {AUTH_ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=self.url) as http:
            project = await http.post(
                "/projects", json={"name": name or f"p-{uuid.uuid4().hex[:8]}"}, headers=admin
            )
            project.raise_for_status()
            pid = project.json()["id"]
            key = await http.post(f"/projects/{pid}/api-keys", json={}, headers=admin)
            key.raise_for_status()
        return pid, key.json()["key"]


@pytest.fixture(scope="session")
async def auth_service(
    database_url: str, amqp_url: str, s3_settings: S3SettingsMixin
) -> AsyncIterator[AuthService]:
    from dataset_service.app import create_app
    from dataset_service.settings import Settings

    schema = f"t_auth_{uuid.uuid4().hex[:10]}"
    bucket = f"t-auth-{uuid.uuid4().hex[:12]}"
    async with s3_client(
        s3_settings.s3_endpoint_url, s3_settings.s3_access_key, s3_settings.s3_secret_key
    ) as client:
        await ensure_bucket(client, bucket)
    settings = Settings(
        amqp_url=amqp_url,  # type: ignore[arg-type]
        database_url=database_url,  # type: ignore[arg-type]
        db_schema=schema,
        topology_prefix=f"t{uuid.uuid4().hex[:10]}.",
        s3_endpoint_url=s3_settings.s3_endpoint_url,
        s3_bucket=bucket,
        admin_key=AUTH_ADMIN_KEY,  # type: ignore[arg-type]
        ephemeral_topology=True,
    )
    async with serve_app(create_app(settings)) as url:
        yield AuthService(url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
