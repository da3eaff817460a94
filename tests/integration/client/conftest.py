"""Real services served over HTTP, and the SDK and the ``prelabel`` CLI run against them.

``served_dataset``: the dataset service alone (uploads). ``stack``: the five services
(``tests/integration/client/stack.py``), one start per test module; ``project``: a
fresh project on it with an SDK client and a CLI runner holding its key.
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
from tests.integration.client.stack import RunningStack, running_stack
from tests.integration.dataset.conftest import ADMIN_KEY, dataset_settings

CLI = Path(sys.executable).parent / "prelabel"
CLI_TIMEOUT_S = 120.0


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
    """The dataset service on a real port, a project key, and its item-event probe."""

    url: str
    settings: Settings
    api_key: str
    events: EventProbe

    def client(self) -> PrelabelClient:
        """An SDK client holding the project key."""
        return PrelabelClient(self.url, self.api_key)

    def cli_env(self) -> dict[str, str]:
        """The environment the CLI reads its configuration from."""
        s = self.settings
        return {
            **os.environ,
            "PRELABEL_DATASET_URL": self.url,
            "PRELABEL_API_KEY": self.api_key,
            "PRELABEL_AMQP_URL": s.amqp,
            "PRELABEL_TOPOLOGY_PREFIX": s.topology_prefix,
            "PRELABEL_S3_ENDPOINT_URL": s.s3_endpoint_url,
            "PRELABEL_S3_ACCESS_KEY": s.s3_access_key,
            "PRELABEL_S3_SECRET_KEY": s.s3_secret_key,
            "PRELABEL_S3_BUCKET": s.s3_bucket,
            "PRELABEL_S3_REGION": s.s3_region,
            # Wide, so tables never fold the text the tests look for.
            "COLUMNS": "200",
        }

    async def cli(self, *args: str) -> CliResult:
        """Run the installed ``prelabel`` console script in a subprocess.

        A separate process, as a user runs it; the service keeps serving from this
        test's event loop while the CLI runs.
        """
        process = await asyncio.create_subprocess_exec(
            str(CLI),
            *args,
            env=self.cli_env(),
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

    async def cli_in_thread(self, *args: str) -> CliResult:
        """Run the CLI in this process (in a worker thread, as it runs its own event loop).

        For the quick commands, where a subprocess would mostly measure Python's start-up.
        """
        env = {k: v for k, v in self.cli_env().items() if k.startswith("PRELABEL_")}
        result = await asyncio.to_thread(
            CliRunner().invoke, app, list(args), env={**env, "COLUMNS": "200"}
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
) -> AsyncIterator[ServedDataset]:
    settings = dataset_settings(
        database_url, amqp_url, s3_settings, s3_bucket, pg_schema, topology_prefix
    )
    app = create_app(settings)
    exchange = f"{settings.topology_prefix}{DATASET}.events"
    async with probe_exchange(amqp_url, exchange) as events, serve_app(app) as url:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=admin) as http:
            project = (await http.post("/projects", json={"name": "acme"})).json()
            key = (await http.post(f"/projects/{project['id']}/api-keys", json={})).json()
        yield ServedDataset(url, settings, key["key"], events)
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
        """The CLI's environment: per-service URLs, the key, a config file of its own."""
        return {
            **self.stack.env(self.api_key),
            "PRELABEL_CONFIG": str(self.config_path),
            "COLUMNS": "200",
            **extra,
        }

    async def cli(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> CliResult:
        """Run ``prelabel`` in this process (in a thread: the CLI runs its own event loop)."""
        result = await asyncio.to_thread(
            CliRunner().invoke, app, list(args), env=env or self.env(), input=input
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
async def project(stack: RunningStack, tmp_path: Path) -> AsyncIterator[Project]:
    project_id, key = await stack.new_project()
    async with Prelabel(stack.endpoints, key, admin_key=stack.admin_key) as client:
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
