"""Upload rate of 50 KB JPEGs through the SDK (HTTP and broker path) vs raw S3 puts.

A dataset service runs in a subprocess (``python -m dataset_service``) on a
free port, with its own PostgreSQL schema ``bench_<id>`` in ``prelabel_test``,
its own bucket and topology prefix, against the stack that ``make bench``
started (``scripts/stack.py up --no-services``). In one run, with the same
concurrency and files of the same size:

- ``dataset.s3_put_raw``: aiobotocore ``put_object`` straight into the bucket, the
  ceiling every upload path pays for;
- ``dataset.upload_http``: ``Uploader`` over the HTTP API, from the first request
  until every file has its item (the 201 answer comes after the commit);
- ``dataset.upload_broker``: ``Uploader`` via S3 + ``ingest_item.v1``, until
  every item exists: the commit time of the last one, read from the service's table
  (the uploader learns it by polling, a little later);
- ``dataset.upload_http_proxy``: the same files over HTTP through the one URL, the
  stack's nginx (:class:`prelabel_stack.Nginx`, the config ``make up`` renders) in front
  of the same service, the SDK's dataset URL resolved from ``PRELABEL_URL`` = nginx,
  into a second dataset.

The four run in ``ROUNDS`` interleaved rounds of ``FILES`` files each (direct and
proxied HTTP take turns going first), and each figure is the median of its rounds.
Targets: each upload path reaches at least half the raw S3 put rate; through the
proxy, at least 0.9 of the direct HTTP rate.
Everything it made is removed again (schema, objects, bucket, queues).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from PIL import Image

from bench import results
from bench._process import service_process
from bench.settings import BenchSettings
from common.s3 import delete_bucket, ensure_bucket, s3_client
from common.testing.broker import delete_names
from common.testing.servers import free_port
from common.topology import DATASET, Topology
from prelabel_client.broker import BrokerIngestor
from prelabel_client.client import PrelabelClient
from prelabel_client.plan import LocalFile
from prelabel_client.settings import ClientSettings
from prelabel_client.uploader import Uploader
from prelabel_stack import SERVICES, Nginx, StackConfig

ORDER = 40
TIMEOUT_S = 300.0

FILES = 300
ROUNDS = 5
FILE_KB = 50
WARMUP_FILES = 10
CONCURRENCY = 8
TARGET_RATIO = 0.5
PROXY_TARGET_RATIO = 0.9
UNIT = "items/s"
ADMIN_KEY = "bench-admin-key"

RAW = "dataset.s3_put_raw"
HTTP = "dataset.upload_http"
BROKER = "dataset.upload_broker"
PROXY = "dataset.upload_http_proxy"


def jpeg_of_size(seed: int, size_kb: int = FILE_KB) -> bytes:
    """A distinct JPEG of about ``size_kb`` KB (noise, so it barely compresses)."""
    rng = random.Random(seed)
    # At quality 75 an RGB noise pixel costs about 0.65 bytes.
    side = int((size_kb * 1024 / 0.65) ** 0.5)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_files(folder: Path, count: int, seed: int) -> list[LocalFile]:
    """``count`` distinct JPEGs in ``folder``, bound for the remote dir ``/<folder name>``."""
    folder.mkdir(parents=True)
    files = []
    for index in range(count):
        path = folder / f"img_{index:04d}.jpg"
        path.write_bytes(jpeg_of_size(seed * 1_000_003 + index))
        files.append(LocalFile(path, f"/{folder.name}", path.stat().st_size))
    return files


async def _new_project_key(url: str) -> str:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as http:
        project = await http.post("/projects", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
        project.raise_for_status()
        key = await http.post(f"/projects/{project.json()['id']}/api-keys", json={})
        key.raise_for_status()
        return str(key.json()["key"])


@contextlib.asynccontextmanager
async def nginx_in_front(dataset_url: str, root: Path) -> AsyncIterator[str]:
    """The stack's nginx in front of the dataset service at ``dataset_url`` (the other
    services' upstreams name free ports: nothing here calls them); yields its URL."""
    config = dataclasses.replace(
        StackConfig.from_env(),
        root=root,
        service_ports={
            s.name: int(dataset_url.rsplit(":", 1)[1]) if s.name == "dataset" else free_port()
            for s in SERVICES
        },
        proxy_port=free_port(),
    )
    for path in (config.logs_dir, config.pids_dir):
        path.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(config)
    await asyncio.to_thread(nginx.launch)
    try:
        await asyncio.to_thread(nginx.wait_ready)
        yield nginx.url
    finally:
        await asyncio.to_thread(nginx.stop)


async def put_raw(s3: Any, bucket: str, files: Sequence[LocalFile], prefix: str) -> float:
    """Put every file straight into the bucket, ``CONCURRENCY`` at a time; seconds taken.

    Reads each file like the uploader does, so both sides pay for the disk.
    """
    window = asyncio.Semaphore(CONCURRENCY)

    async def put(file: LocalFile) -> None:
        async with window:
            data = await asyncio.to_thread(file.path.read_bytes)
            await s3.put_object(Bucket=bucket, Key=f"{prefix}/{file.path.name}", Body=data)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for file in files:
            group.create_task(put(file))
    return time.monotonic() - started


async def upload(
    uploader: Uploader,
    files: Sequence[LocalFile],
    dataset_id: str,
    via: str,
    db: asyncpg.Connection,
    schema: str,
) -> float:
    """Upload through the SDK; seconds until every file is an item (fails loudly otherwise).

    Over HTTP that is when the last 201 arrived (it comes after the commit). On the
    broker path it is when the last item was registered (its commit time in the
    service's table), not when the uploader's next poll happens to notice it.
    """
    started = time.time()
    summary = await uploader.upload(files, dataset_id, via="broker" if via == "broker" else "http")
    finished = time.time()
    counts = summary.counts()
    if counts["uploaded"] != len(files):
        reasons = summary.failure_reasons()[:3]
        raise RuntimeError(f"{via} upload: {counts}, e.g. {reasons}")
    if via == "broker":
        registered = await db.fetchval(
            f"SELECT max(created_at) FROM {schema}.items WHERE filename = ANY($1)",
            [f"{f.remote_dir}/{f.name}" for f in files],
        )
        finished = registered.timestamp()
    return finished - started


async def run() -> None:
    """Measure and record the raw S3 put rate and the upload rates."""
    settings = BenchSettings()
    run_id = uuid.uuid4().hex[:12]
    schema, bucket, prefix = f"bench_{run_id}", f"bench-{run_id}", f"bench{run_id}."
    topology = Topology(prefix)
    env = {
        "DATASET_AMQP_URL": settings.amqp_url,
        "DATASET_DATABASE_URL": settings.test_database_url,
        "DATASET_DB_SCHEMA": schema,
        "DATASET_TOPOLOGY_PREFIX": prefix,
        "DATASET_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "DATASET_S3_ACCESS_KEY": settings.s3_access_key,
        "DATASET_S3_SECRET_KEY": settings.s3_secret_key,
        "DATASET_S3_REGION": settings.s3_region,
        "DATASET_S3_BUCKET": bucket,
        "DATASET_ADMIN_KEY": ADMIN_KEY,
        "DATASET_LOG_LEVEL": "WARNING",
    }
    s3_args = (
        settings.s3_endpoint_url,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_region,
    )
    with tempfile.TemporaryDirectory(prefix="prelabel-bench-") as tmp:
        root = Path(tmp)
        # Distinct content per path: the broker path must really put its blobs.
        warm = write_files(root / "warm", WARMUP_FILES * 3, seed=1)
        http_files = write_files(root / "http", FILES * ROUNDS, seed=2)
        broker_files = write_files(root / "broker", FILES * ROUNDS, seed=3)
        raw_s: list[float] = []
        http_s: list[float] = []
        broker_s: list[float] = []
        proxy_s: list[float] = []
        size_kb = sum(f.size for f in http_files) / len(http_files) / 1024
        print(f"{FILES} JPEGs of {size_kb:.0f} KB on average, {CONCURRENCY} in flight")
        async with s3_client(*s3_args, max_pool_connections=CONCURRENCY * 2) as s3:
            await ensure_bucket(s3, bucket)
            try:
                async with (
                    service_process(
                        "dataset_service", "DATASET_", env, root / "dataset.log"
                    ) as url,
                    nginx_in_front(url, root / "stack") as proxy_url,
                ):
                    api_key = await _new_project_key(url)
                    # What the SDK reaches with PRELABEL_URL=<nginx> and no per-service URL.
                    proxied_url = ClientSettings(
                        url=proxy_url, dataset_url=None, api_key=api_key
                    ).endpoints.dataset
                    db = await asyncpg.connect(settings.test_database_url)
                    async with (
                        contextlib.AsyncExitStack() as closing,
                        PrelabelClient(url, api_key, max_connections=CONCURRENCY * 2) as client,
                        PrelabelClient(
                            proxied_url, api_key, max_connections=CONCURRENCY * 2
                        ) as proxied,
                        BrokerIngestor(
                            amqp_url=settings.amqp_url,
                            s3_endpoint_url=settings.s3_endpoint_url,
                            s3_access_key=settings.s3_access_key,
                            s3_secret_key=settings.s3_secret_key,
                            s3_bucket=bucket,
                            s3_region=settings.s3_region,
                            topology_prefix=prefix,
                            max_connections=CONCURRENCY * 2,
                            api_key=api_key,
                        ) as ingestor,
                    ):
                        closing.push_async_callback(db.close)
                        dataset = await client.create_dataset("bench")
                        proxy_dataset = await proxied.create_dataset("bench-proxy")
                        uploader = Uploader(
                            client,
                            concurrency=CONCURRENCY,
                            ingestor=ingestor,
                            poll_interval_s=0.05,
                            max_poll_interval_s=0.1,
                        )
                        proxy_uploader = Uploader(proxied, concurrency=CONCURRENCY)
                        # Warm connections, pools and the service's code paths first.
                        await put_raw(s3, bucket, warm[:WARMUP_FILES], "raw-warm")
                        warm_http = warm[WARMUP_FILES : 2 * WARMUP_FILES]
                        await upload(uploader, warm_http, dataset.id, "http", db, schema)
                        await upload(
                            proxy_uploader, warm_http, proxy_dataset.id, "http", db, schema
                        )
                        warm_broker = warm[2 * WARMUP_FILES :]
                        await upload(uploader, warm_broker, dataset.id, "broker", db, schema)

                        # Rounds interleave the three, so a slow moment of the machine (or
                        # SeaweedFS adding a volume once one fills up) lands on one round
                        # of one path; each figure is the median of its rounds.
                        for n in range(ROUNDS):
                            part = slice(n * FILES, (n + 1) * FILES)
                            raw_s.append(await put_raw(s3, bucket, http_files[part], f"raw{n}"))
                            # The same files, direct and through nginx, taking turns first.
                            ways = [
                                (http_s, uploader, dataset.id),
                                (proxy_s, proxy_uploader, proxy_dataset.id),
                            ]
                            for timings, way, into in ways[:: 1 if n % 2 == 0 else -1]:
                                timings.append(
                                    await upload(way, http_files[part], into, "http", db, schema)
                                )
                            broker_s.append(
                                await upload(
                                    uploader, broker_files[part], dataset.id, "broker", db, schema
                                )
                            )
            finally:
                await delete_bucket(s3, bucket)
                await _drop_schema(settings.test_database_url, schema)
                await delete_names(
                    settings.amqp_url,
                    [
                        topology.queue(DATASET, "on_ingest_item"),
                        Topology.dead_letter_queue(topology.queue(DATASET, "on_ingest_item")),
                    ],
                    [
                        topology.events_exchange(DATASET),
                        topology.commands_exchange(DATASET),
                        topology.dead_letter_exchange(DATASET),
                    ],
                )
    rates = {
        name: [FILES / seconds for seconds in timings]
        for name, timings in ((RAW, raw_s), (HTTP, http_s), (BROKER, broker_s), (PROXY, proxy_s))
    }
    for name, per_round in rates.items():
        shown = ", ".join(f"{rate:,.0f}" for rate in per_round)
        print(f"{name}: {FILES} per round, {UNIT} by round: {shown}")
    raw = statistics.median(rates[RAW])
    results.record(RAW, raw, UNIT)
    for name in (HTTP, BROKER):
        results.record(
            name, statistics.median(rates[name]), UNIT, RAW, raw, target_ratio=TARGET_RATIO
        )
    direct = statistics.median(rates[HTTP])
    results.record(
        PROXY,
        statistics.median(rates[PROXY]),
        UNIT,
        HTTP,
        direct,
        target_ratio=PROXY_TARGET_RATIO,
    )


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
