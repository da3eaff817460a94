"""Real services served over HTTP behind the real nginx, and the SDK and the ``prelabel``
CLI run against them through the one URL (``PRELABEL_URL``, no per-service URL).

``served_dataset``: the dataset service alone (uploads). ``stack``: the five services
(``tests/integration/client/stack.py``), one start per test module; ``project``: a
fresh project on it with an SDK client and a CLI runner holding its key. Both have
nginx in front (``tests/integration/client/proxy.py``, the stack's own config).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from common.s3 import s3_client
from common.service import runtime_of
from common.settings import S3SettingsMixin
from common.testing.broker import EventProbe, delete_names, probe_exchange
from common.testing.servers import serve_app
from common.topology import DATASET
from dataset_service.app import create_app
from dataset_service.settings import Settings
from prelabel_client.cli import app
from prelabel_client.client import PrelabelClient
from prelabel_client.sdk import Prelabel
from prelabel_client.settings import ClientSettings
from tests.integration.client.proxy import Proxy, nginx_in_front
from tests.integration.client.stack import RunningStack, running_stack
from tests.integration.dataset.conftest import ADMIN_KEY, dataset_settings

CLI = Path(sys.executable).parent / "prelabel"
CLI_TIMEOUT_S = 120.0
CLIENT_VARIABLES = (
    *(f"PRELABEL_{name.upper()}" for name in ClientSettings.model_fields),
    "PRELABEL_PROFILE",
    "PRELABEL_CONFIG",
)
"""Every variable the CLI reads its configuration from."""


def runner_env(values: dict[str, str]) -> dict[str, str | None]:
    """``CliRunner``'s ``env`` (laid over this process's environment): ``values``, and
    every other variable the CLI reads removed, so that nothing but ``values`` (one
    ``PRELABEL_URL``, never a per-service URL) tells it where the services are."""
    cleared: dict[str, str | None] = {name: None for name in CLIENT_VARIABLES}
    return {**cleared, "COLUMNS": "200", **values}


def process_env(values: dict[str, str]) -> dict[str, str]:
    """A subprocess's whole environment: this process's without the CLI's variables,
    plus ``values``."""
    kept = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
    return {**kept, "COLUMNS": "200", **values}


async def run_process(*args: str, env: dict[str, str]) -> CliResult:
    """Run the installed ``prelabel`` console script in a subprocess, as a user runs it
    (what reaches the terminal is all there is); the services keep serving from this
    test's event loop while it runs."""
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        *args,
        env=process_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


@dataclass
class CliResult:
    """What one ``prelabel`` run printed and returned."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The ``--json`` summary."""
        return json.loads(self.stdout)


@dataclass
class ServedDataset:
    """The dataset service on a real port behind nginx, a project key, and its
    item-event probe."""

    proxy: Proxy
    settings: Settings
    api_key: str
    events: EventProbe

    @property
    def url(self) -> str:
        """The dataset service through the proxy (``<PRELABEL_URL>/api/dataset``)."""
        return f"{self.proxy.url}/api/dataset"

    def client(self) -> PrelabelClient:
        """An SDK client holding the project key, through the proxy."""
        return PrelabelClient(self.url, self.api_key)

    def cli_env(self) -> dict[str, str]:
        """The variables the CLI reads its configuration from: the one URL, the key,
        and the broker path's broker and bucket."""
        s = self.settings
        return {
            "PRELABEL_URL": self.proxy.url,
            "PRELABEL_API_KEY": self.api_key,
            # No config file: a user's profile (its per-service URLs) must not leak in.
            "PRELABEL_CONFIG": "/nonexistent/prelabel/config.json",
            "PRELABEL_AMQP_URL": s.amqp,
            "PRELABEL_TOPOLOGY_PREFIX": s.topology_prefix,
            "PRELABEL_S3_ENDPOINT_URL": s.s3_endpoint_url,
            "PRELABEL_S3_ACCESS_KEY": s.s3_access_key,
            "PRELABEL_S3_SECRET_KEY": s.s3_secret_key,
            "PRELABEL_S3_BUCKET": s.s3_bucket,
            "PRELABEL_S3_REGION": s.s3_region,
        }

    async def cli(self, *args: str) -> CliResult:
        """Run the installed ``prelabel`` console script in a subprocess (a separate
        process, as a user runs it)."""
        return await run_process(*args, env=self.cli_env())

    async def cli_in_thread(self, *args: str) -> CliResult:
        """Run the CLI in this process (in a worker thread, as it runs its own event loop).

        For the quick commands, where a subprocess would mostly measure Python's start-up.
        """
        result = await asyncio.to_thread(
            CliRunner().invoke, app, list(args), env=runner_env(self.cli_env())
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
async def served_dataset(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    pg_schema: str,
    topology_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[ServedDataset]:
    settings = dataset_settings(
        database_url, amqp_url, s3_settings, s3_bucket, pg_schema, topology_prefix
    )
    app = create_app(settings)
    exchange = f"{settings.topology_prefix}{DATASET}.events"
    async with probe_exchange(amqp_url, exchange) as events, serve_app(app) as url:
        with nginx_in_front(tmp_path / "proxy", {"dataset": url}) as proxy:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            base = f"{proxy.url}/api/dataset"
            async with httpx.AsyncClient(base_url=base, headers=admin) as http:
                project = (await http.post("/projects", json={"name": "acme"})).json()
                key = (await http.post(f"/projects/{project['id']}/api-keys", json={})).json()
            yield ServedDataset(proxy, settings, key["key"], events)
        queues = runtime_of(app).consumer_queues
    await delete_names(
        amqp_url,
        [*queues, *(f"{q}.dlq" for q in queues)],
        [
            exchange,
            f"{settings.topology_prefix}{DATASET}.commands",
            f"{settings.topology_prefix}{DATASET}.dlx",
        ],
    )


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> AsyncIterator[RunningStack]:
    async with running_stack(
        database_url=database_url,
        amqp_url=amqp_url,
        s3_settings=s3_settings,
        triton_url=triton_url,
        triton_grpc_url=triton_grpc_url,
    ) as running:
        root = tmp_path_factory.mktemp("proxy")
        with nginx_in_front(root, running.endpoints.as_dict()) as proxy:
            running.proxy = proxy
            yield running


@dataclass
class Project:
    """A fresh project on the stack: its key, an SDK client, and the CLI with its key."""

    stack: RunningStack
    project_id: str
    api_key: str
    client: Prelabel
    config_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's variables: ``PRELABEL_URL`` (nginx), the key, a config file of its own."""
        return {
            **self.stack.env(self.api_key),
            "PRELABEL_CONFIG": str(self.config_path),
            **extra,
        }

    async def cli(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> CliResult:
        """Run ``prelabel`` in this process (in a thread: the CLI runs its own event loop),
        with ``env`` (default :meth:`env`) as its only configuration."""
        result = await asyncio.to_thread(
            CliRunner().invoke, app, list(args), env=runner_env(env or self.env()), input=input
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)

    async def shown(
        self, *args: str, env: dict[str, str] | None = None, moving: tuple[str, ...] = ()
    ) -> tuple[str, Any]:
        """Run a printing command with ``-o table``, ``-o json`` and ``-o yaml``: each
        succeeds, JSON and YAML parse to the same data (but the top-level keys in
        ``moving``, such as a window ending now), without colour or anything on stderr;
        answers the table's text and the data."""
        as_table, as_json, as_yaml = [
            await self.cli(*args, "-o", fmt, env=env) for fmt in ("table", "json", "yaml")
        ]
        for result in (as_table, as_json, as_yaml):
            assert result.exit_code == 0, (args, result.stderr + result.stdout)
        data = json.loads(as_json.stdout)
        other = yaml.safe_load(as_yaml.stdout)
        if moving:
            other = {**other, **{key: data[key] for key in moving}}
        assert other == data, args
        for result in (as_json, as_yaml):
            assert "\x1b[" not in result.stdout, args
            assert result.stderr == "", (args, result.stderr)
        assert as_table.stdout.strip(), args
        assert as_table.stdout != as_json.stdout, args
        return as_table.stdout, data

    async def process(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        """Run the installed ``prelabel`` in a subprocess, with ``env`` (default :meth:`env`)."""
        return await run_process(*args, env=env or self.env())


@pytest.fixture
async def project(stack: RunningStack, tmp_path: Path) -> AsyncIterator[Project]:
    project_id, key = await stack.new_project()
    async with Prelabel(stack.proxied, key, admin_key=stack.admin_key) as client:
        yield Project(stack, project_id, key, client, tmp_path / "prelabel-config.json")


def noisy_jpeg(seed: int, min_kb: int = 5, max_kb: int = 50) -> bytes:
    """A distinct JPEG of roughly ``min_kb``..``max_kb`` KB (noise barely compresses)."""
    rng = random.Random(seed)
    # At quality 75 an RGB noise pixel costs about 0.65 bytes.
    side = int((rng.uniform(min_kb, max_kb) * 1024 / 0.65) ** 0.5)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_jpegs(folder: Path, count: int, *, seed: int = 0, subfolders: int = 1) -> list[Path]:
    """``count`` distinct JPEGs spread over ``subfolders`` folders below ``folder``."""
    paths = []
    for index in range(count):
        sub = folder / f"part{index % subfolders}" if subfolders > 1 else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img_{index:05d}.jpg"
        path.write_bytes(noisy_jpeg(seed * 1_000_003 + index))
        paths.append(path)
    return paths


@pytest.fixture
async def bucket_client(s3_settings: S3SettingsMixin) -> AsyncIterator[Any]:
    """A plain S3 client, to look into the service's bucket."""
    async with s3_client(
        s3_settings.s3_endpoint_url,
        s3_settings.s3_access_key,
        s3_settings.s3_secret_key,
        s3_settings.s3_region,
    ) as client:
        yield client
