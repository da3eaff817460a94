"""pytest plugin: fixtures for the real servers (PostgreSQL, RabbitMQ, S3, Triton).

URLs come from ``PRELABEL_TEST_*`` variables (``make test`` sets them after
``make up``). Where a URL is not configured and a Docker engine answers,
testcontainers starts the server instead; otherwise the local default is used.
Every test gets its own PostgreSQL schema, bucket and queue/exchange names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from common.db import create_pool
from common.s3 import delete_bucket, ensure_bucket, s3_client
from common.settings import S3SettingsMixin

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/prelabel_test"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_S3_ENDPOINT = "http://127.0.0.1:8333"
DEFAULT_TRITON_URL = "127.0.0.1:8000"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder: tests/unit, tests/integration, tests/contract, tests/e2e."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "integration", "contract", "e2e"):
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """After a failed fixture set-up, check that the broker and the database still answer;
    when one does not, stop the run with the reason: every later test would only wait out
    its timeouts (a broken server turned a 25-minute suite into 90 minutes of errors)."""
    report = yield
    if report.when == "setup" and report.failed:
        down = _servers_down()
        if down:
            pytest.exit(f"stopping the run after {item.nodeid}: {down}", returncode=3)
    return report


def _servers_down() -> str:
    """Which of the suite's configured RabbitMQ and PostgreSQL (``PRELABEL_TEST_*_URL``) no
    longer let a client in, and why."""
    import asyncio
    import concurrent.futures

    import aiormq

    async def broker(url: str) -> None:
        connection = await aiormq.connect(url)
        await connection.close()

    async def postgres(url: str) -> None:
        conn = await asyncpg.connect(url, timeout=10)
        await conn.close()

    configured = (
        ("RabbitMQ", os.environ.get("PRELABEL_TEST_AMQP_URL"), broker),
        ("PostgreSQL", os.environ.get("PRELABEL_TEST_DATABASE_URL"), postgres),
    )

    async def check() -> list[str]:
        problems = []
        for name, url, probe in configured:
            if not url:
                continue  # a testcontainer's or the default: not this check's business
            try:
                await asyncio.wait_for(probe(url), 15)
            except Exception as exc:
                problems.append(f"{name} at {url} does not let a client in ({exc!r})")
        return problems

    # Its own thread and event loop: the test's loop may be the session's, idle here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return "; ".join(pool.submit(asyncio.run, check()).result())


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def _containers() -> Iterator[dict[str, Any]]:
    """Lazily started testcontainers, only where no URL is configured and Docker runs."""
    started: dict[str, Any] = {}
    yield started
    for container in started.values():
        container.stop()


def _configured_or_container(env: str, default: str, kind: str, containers: dict[str, Any]) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not _docker_engine():
        return default
    if kind == "postgres":
        from testcontainers.postgres import PostgresContainer

        pg = PostgresContainer("postgres:16", driver=None).start()
        containers[kind] = pg
        return str(pg.get_connection_url())
    if kind == "rabbitmq":
        from testcontainers.rabbitmq import RabbitMqContainer

        mq = RabbitMqContainer("rabbitmq:3.13").start()
        containers[kind] = mq
        host, port = mq.get_container_host_ip(), mq.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/"
    if kind == "s3":
        from testcontainers.minio import MinioContainer

        minio = MinioContainer(access_key="prelabel", secret_key="prelabel-secret").start()
        containers[kind] = minio
        config = minio.get_config()
        return f"http://{config['endpoint']}"
    return default


@pytest.fixture(scope="session")
async def database_url(_containers: dict[str, Any]) -> str:
    """DSN of the test database; created on first use."""
    url = _configured_or_container(
        "PRELABEL_TEST_DATABASE_URL", DEFAULT_DATABASE_URL, "postgres", _containers
    )
    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    else:
        await conn.close()
    return url


@pytest.fixture
async def pg_schema(database_url: str) -> AsyncIterator[str]:
    """A fresh schema name for one test; the schema is dropped afterwards if it was made."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg_pool(database_url: str, pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool bound to an empty schema of its own (dropped after the test)."""
    pool = await create_pool(database_url, pg_schema, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def topology_prefix() -> str:
    """A prefix that namespaces every exchange and queue a test's services declare."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="session")
def amqp_url(_containers: dict[str, Any]) -> str:
    """The broker URL."""
    return _configured_or_container(
        "PRELABEL_TEST_AMQP_URL", DEFAULT_AMQP_URL, "rabbitmq", _containers
    )


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("orders")`` -> ``"orders_1f2e..."``: names no other test uses."""

    def make(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture(scope="session")
def s3_settings(_containers: dict[str, Any]) -> S3SettingsMixin:
    """S3 connection settings (bucket field is the default; use ``s3_bucket`` for a fresh one)."""
    endpoint = _configured_or_container(
        "PRELABEL_TEST_S3_ENDPOINT_URL", DEFAULT_S3_ENDPOINT, "s3", _containers
    )
    return S3SettingsMixin(s3_endpoint_url=endpoint)


@pytest.fixture
async def s3_bucket(s3_settings: S3SettingsMixin) -> AsyncIterator[str]:
    """A fresh, empty bucket for one test; emptied and deleted afterwards."""
    bucket = f"t-{uuid.uuid4().hex[:20]}"
    async with s3_client(
        s3_settings.s3_endpoint_url,
        s3_settings.s3_access_key,
        s3_settings.s3_secret_key,
        s3_settings.s3_region,
    ) as client:
        await ensure_bucket(client, bucket)
        yield bucket
        await delete_bucket(client, bucket)


@pytest.fixture(scope="session")
def triton_url() -> str:
    """Triton's HTTP address (host:port)."""
    return os.environ.get("PRELABEL_TEST_TRITON_URL", DEFAULT_TRITON_URL)


@pytest.fixture(scope="session")
def triton_grpc_url() -> str:
    """Triton's gRPC address (host:port)."""
    return os.environ.get("PRELABEL_TEST_TRITON_GRPC_URL", "127.0.0.1:8001")
