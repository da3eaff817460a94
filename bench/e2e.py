"""End to end: upload -> annotation latency and throughput against a plain loop, and the
CPU each item costs, process by process.

All five services run as they are deployed (``python -m <package>``, started by the
local stack's own components) behind the real nginx, in a database and a bucket of
their own with a topology prefix of their own. A digits-classifier model service is
warm (``min_replicas`` 1) and a trigger on the dataset runs it on every created item;
items are uploaded through the proxy with the SDK at a fixed concurrency.

- ``e2e.digits_latency_p50`` / ``_p95`` / ``_p99`` (ms): from the upload request's start
  to its annotation row's ``created_at`` (read from the database), warm, over the
  measured run at the fixed concurrency. Targets 50 ms and 250 ms (fixed references:
  ratio = value / target, at most 1). That run saturates the machine on purpose, so
  these figures are mostly queueing: by Little's law a closed loop of ``concurrency``
  uploaders keeps at least that many items in the system, so p50 is at least
  ``concurrency / throughput`` (16 / 160 items/s = 100 ms) however short the path is.
- ``e2e.digits_paced_latency_p50`` / ``_p95`` / ``_p99``: the same latency, same
  targets, for uploads started on a fixed schedule (open loop, measured from the
  scheduled start, so a slow upload delays nobody's clock) at ``paced_load`` (half) of
  the throughput just measured: a warm system busy but not overloaded.
- ``e2e.digits_idle_latency_p50`` / ``_p95`` / ``_p99``: one item in the system at a
  time (each upload waits for its annotation): the floor of the path itself.
- ``e2e.digits_throughput`` (items/s, upload of the first to annotation of the last)
  next to ``e2e.digits_plain_loop``: the same items at the same concurrency done by a
  script with no platform: S3 put, Triton inference over gRPC batched (up to the model's
  batch size), one annotation insert per item into PostgreSQL. Target ratio >= 0.5.
- ``e2e.digits_cpu.<process>`` (CPU ms per item, user + system, over the measured run):
  each prelabel service, the workers, nginx, and the servers (RabbitMQ, PostgreSQL
  backends of the bench database, SeaweedFS, Triton), next to the plain loop's own CPU;
  ``e2e.digits_cpu.platform`` sums the prelabel processes and the stack's nginx (master
  and workers, known by the stack's directory in the master's command line),
  ``e2e.digits_cpu.servers`` the servers, each next to the plain loop's (``plain_loop``:
  the script itself, ``plain_loop_servers``: the servers during it), and each server
  next to what it spent during the plain loop (``plain_loop_<server>``). RabbitMQ,
  SeaweedFS and Triton are shared with whatever else runs on the machine.
- ``e2e.ocr_throughput`` vs ``e2e.ocr_plain_loop`` with ``ocr-text`` on rendered
  documents: the model dominates, target ratio >= 0.9.

Sizes: ``PRELABEL_BENCH_E2E_ITEMS`` (default 2000), ``PRELABEL_BENCH_E2E_OCR_ITEMS``
(200; 0 skips the OCR run), ``PRELABEL_BENCH_E2E_CONCURRENCY`` (16),
``PRELABEL_BENCH_E2E_PACED_ITEMS`` (1000), ``PRELABEL_BENCH_E2E_PACED_LOAD`` (0.5),
``PRELABEL_BENCH_E2E_IDLE_ITEMS`` (100).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import numpy.typing as npt
import psutil
import tritonclient.grpc.aio as triton_grpc
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench import results
from bench._cpu import SERVERS, cpu_seconds, cpu_snapshot, cpu_spent, record_cpu
from bench.model_serving import digit_images, text_images
from bench.settings import BenchSettings
from common.blobs import BlobStore
from common.s3 import blob_key
from prelabel_client import Prelabel
from prelabel_client.models import Operation, Scaling, TriggerSpec
from prelabel_stack.isolated import ADMIN_KEY, IsolatedStack, isolated_stack

ORDER = 95
TIMEOUT_S = 1200.0

Scores = npt.NDArray[np.float32]
WARMUP_ITEMS = 40
DEADLINE_S = 600.0


class E2EBenchSettings(BaseSettings):
    """Sizes of the run (``PRELABEL_BENCH_E2E_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_BENCH_E2E_", extra="ignore")

    items: int = 2000
    ocr_items: int = 200
    """Rendered documents through ``ocr-text``; 0 skips that run."""
    concurrency: int = 16
    paced_items: int = 1000
    paced_load: float = 0.5
    """The paced run's rate, as a share of the saturated run's throughput."""
    idle_items: int = 100


# --------------------------------------------------------------------------- the platform


@dataclass
class Prepared:
    """A project with a warm model service and a trigger on a dataset."""

    client: Prelabel
    dataset_id: str
    model_triton_name: str
    input_tensor: str
    outputs: list[str]
    score_output: str
    """The output holding confidences (``scores`` of the adapter; else the first)."""
    max_batch: int


@contextlib.asynccontextmanager
async def prepared(
    stack: IsolatedStack, catalog_name: str, concurrency: int
) -> AsyncIterator[Prepared]:
    """Project, dataset, ``catalog_name`` installed and deployed warm (min 1 replica),
    and an Item Created trigger from the dataset to it."""
    async with Prelabel(stack.url, "unused", admin_key=ADMIN_KEY) as admin:
        project = await admin.projects.create(f"bench-e2e-{catalog_name}")
        key = await admin.projects.create_api_key(project.id)
    client = Prelabel(stack.url, str(key.key), max_connections=concurrency * 2)
    try:
        dataset = await client.datasets.create(f"e2e-{catalog_name}")
        model = await client.models.install(catalog_name)
        service = await client.services.deploy(
            model.id,
            f"e2e-{catalog_name}",
            Scaling(min_replicas=1, max_replicas=1, concurrency=64, cooldown_seconds=600),
        )
        await client.services.wait_ready(service.id, timeout_s=300)
        spec = TriggerSpec(
            filter={"dataset_id": dataset.id},
            operation=Operation(service_id=service.id),
        )
        await client.triggers.create(f"e2e-{catalog_name}", spec)
        adapter = model.spec.get("adapter", {})
        outputs = {str(k): str(v) for k, v in adapter.get("outputs", {}).items()}
        yield Prepared(
            client=client,
            dataset_id=dataset.id,
            model_triton_name=model.triton_name,
            input_tensor=str(model.spec.get("input", {}).get("tensor", "IMAGE")),
            outputs=list(outputs.values()),
            score_output=outputs.get("scores") or next(iter(outputs.values())),
            max_batch=int(model.spec.get("max_batch_size", 8)),
        )
    finally:
        await client.aclose()


async def _annotated(conn: asyncpg.Connection, item_ids: Sequence[str]) -> dict[str, float]:
    """First annotation time (epoch seconds) of each of ``item_ids`` that has one."""
    rows = await conn.fetch(
        """SELECT item_id, extract(epoch FROM min(created_at)) AS at
           FROM annotation.annotations WHERE item_id = ANY($1::text[]) GROUP BY item_id""",
        list(item_ids),
    )
    return {r["item_id"]: float(r["at"]) for r in rows}


async def wait_annotated(stack: IsolatedStack, item_ids: Sequence[str]) -> dict[str, float]:
    """Wait (deadline) until every item has its annotations; their times."""
    conn = await asyncpg.connect(stack.dsn)
    try:
        return await _until_annotated(conn, item_ids, DEADLINE_S, 0.2)
    finally:
        await conn.close()


async def _until_annotated(
    conn: asyncpg.Connection, item_ids: Sequence[str], deadline_s: float, poll_s: float
) -> dict[str, float]:
    deadline = time.monotonic() + deadline_s
    while True:
        done = await _annotated(conn, item_ids)
        if len(done) == len(item_ids):
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(done)} of {len(item_ids)} items annotated in time")
        await asyncio.sleep(poll_s)


async def upload_all(
    target: Prepared, blobs: Sequence[bytes], concurrency: int, tag: str
) -> tuple[list[str], list[float]]:
    """Upload every blob (``concurrency`` in flight); item ids and request start times."""
    ids: list[str] = [""] * len(blobs)
    starts: list[float] = [0.0] * len(blobs)
    counter = iter(range(len(blobs)))

    async def loop() -> None:
        for index in counter:
            starts[index] = time.time()
            item = await target.client.items.upload(
                target.dataset_id, blobs[index], f"{tag}-{index}.png"
            )
            ids[index] = item.id

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return ids, starts


@dataclass
class PlatformRun:
    """One measured run through the platform."""

    latencies_ms: list[float]
    throughput: float
    cpu: dict[str, float]
    paced_ms: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)


async def through_platform(
    stack: IsolatedStack, target: Prepared, blobs: Sequence[bytes], concurrency: int
) -> PlatformRun:
    """Warm up, then upload ``blobs`` and wait for every annotation."""
    warm_ids, _ = await upload_all(target, blobs[:WARMUP_ITEMS], concurrency, "warm")
    await wait_annotated(stack, warm_ids)
    before = cpu_snapshot(stack)
    ids, starts = await upload_all(target, blobs, concurrency, "run")
    done = await wait_annotated(stack, ids)
    after = cpu_snapshot(stack)
    latencies = [(done[i] - s) * 1000 for i, s in zip(ids, starts, strict=True)]
    elapsed = max(done.values()) - min(starts)
    return PlatformRun(latencies, len(blobs) / elapsed, cpu_spent(before, after))


async def paced(
    stack: IsolatedStack, target: Prepared, blobs: Sequence[bytes], rate: float
) -> list[float]:
    """Start one upload every ``1 / rate`` seconds whatever the earlier ones are doing;
    latencies (ms) from each upload's scheduled start to its annotation."""
    loop = asyncio.get_running_loop()
    begin = time.time() + 0.05
    ids: list[str] = [""] * len(blobs)

    async def one(index: int) -> None:
        item = await target.client.items.upload(
            target.dataset_id, blobs[index], f"paced-{index}.png"
        )
        ids[index] = item.id

    tasks: list[asyncio.Task[None]] = []
    for index in range(len(blobs)):
        await asyncio.sleep(max(begin + index / rate - time.time(), 0.0))
        tasks.append(loop.create_task(one(index)))
    await asyncio.gather(*tasks)
    done = await wait_annotated(stack, ids)
    return [(done[i] - (begin + n / rate)) * 1000 for n, i in enumerate(ids)]


async def one_at_a_time(
    stack: IsolatedStack, target: Prepared, blobs: Sequence[bytes]
) -> list[float]:
    """Upload each blob once the previous one is annotated; latencies (ms)."""
    conn = await asyncpg.connect(stack.dsn)
    latencies: list[float] = []
    try:
        for index, blob in enumerate(blobs):
            started = time.time()
            item = await target.client.items.upload(target.dataset_id, blob, f"idle-{index}.png")
            done = await _until_annotated(conn, [item.id], 60.0, 0.002)
            latencies.append((done[item.id] - started) * 1000)
    finally:
        await conn.close()
    return latencies


# --------------------------------------------------------------------------- the plain loop


class TritonBatcher:
    """Calls Triton once per batch of whatever requests are waiting (up to ``max_batch``),
    as a script that batches would."""

    def __init__(self, target: Prepared, url: str) -> None:
        self._target = target
        self._client = triton_grpc.InferenceServerClient(url)
        self._waiting: list[tuple[bytes, asyncio.Future[Scores]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TritonBatcher:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.close()

    async def infer(self, image: bytes) -> Scores:
        future: asyncio.Future[Scores] = asyncio.get_running_loop().create_future()
        self._waiting.append((image, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        t = self._target
        outputs = [triton_grpc.InferRequestedOutput(name) for name in t.outputs]
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch, self._waiting = self._waiting[: t.max_batch], self._waiting[t.max_batch :]
                tensor = triton_grpc.InferInput(t.input_tensor, [len(batch), 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[b] for b, _ in batch], dtype=object))
                try:
                    answer = await self._client.infer(
                        t.model_triton_name, [tensor], outputs=outputs
                    )
                except Exception as exc:
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                scores = answer.as_numpy(t.score_output)
                for row, (_, future) in enumerate(batch):
                    values = scores[row] if scores is not None else np.array([])
                    future.set_result(np.asarray(values, dtype=np.float32).ravel())


async def plain_loop(
    stack: IsolatedStack, target: Prepared, blobs: Sequence[bytes], concurrency: int
) -> tuple[float, float, dict[str, float]]:
    """The same work with no platform: S3 put, batched Triton call, one row per item.
    Returns (items/s, this process's CPU seconds, each server's CPU seconds)."""
    c = stack.config
    store = BlobStore(
        c.s3_endpoint,
        stack.bucket,
        access_key=c.s3_access_key,
        secret_key=c.s3_secret_key,
        region=c.s3_region,
        max_connections=concurrency,
    )
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=concurrency)
    assert pool is not None
    await pool.execute(
        """CREATE TABLE IF NOT EXISTS plain_annotations (
               id bigserial PRIMARY KEY, item text NOT NULL, label text NOT NULL,
               confidence float8 NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"""
    )
    me = psutil.Process()
    try:
        async with TritonBatcher(target, c.triton_grpc_url) as triton:

            async def one(index: int) -> None:
                data = blobs[index]
                key = blob_key(hashlib.sha256(data).hexdigest())
                await store.put(key, data, "image/png")
                scores = await triton.infer(data)
                label = int(np.argmax(scores)) if scores.size else -1
                confidence = float(np.max(scores)) if scores.size else 0.0
                await pool.execute(
                    "INSERT INTO plain_annotations (item, label, confidence) VALUES ($1, $2, $3)",
                    f"plain-{index}",
                    str(label),
                    confidence,
                )

            counter = iter(range(len(blobs)))

            async def loop() -> None:
                for index in counter:
                    await one(index)

            servers_before = cpu_snapshot(stack)
            cpu_before = cpu_seconds(me)
            started = time.monotonic()
            await asyncio.gather(*(loop() for _ in range(concurrency)))
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(me) - cpu_before
            servers = cpu_spent(servers_before, cpu_snapshot(stack))
    finally:
        await pool.close()
        await store.close()
    return len(blobs) / elapsed, cpu, {k: v for k, v in servers.items() if k in SERVERS}


# --------------------------------------------------------------------------- run


def _cycle(blobs: Sequence[bytes], count: int) -> Iterator[bytes]:
    for index in range(count):
        yield blobs[index % len(blobs)]


def _percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(
    stack: IsolatedStack,
    prefix: str,
    catalog_name: str,
    blobs: Sequence[bytes],
    settings: E2EBenchSettings,
    target_ratio: float,
    on_run: Callable[[PlatformRun], None] | None = None,
) -> None:
    async with prepared(stack, catalog_name, settings.concurrency) as target:
        run = await through_platform(stack, target, blobs, settings.concurrency)
        if on_run is not None:
            rate = run.throughput * settings.paced_load
            run.paced_ms = await paced(stack, target, blobs[: settings.paced_items], rate)
            run.idle_ms = await one_at_a_time(stack, target, blobs[: settings.idle_items])
        plain, plain_cpu, plain_servers = await plain_loop(
            stack, target, blobs, settings.concurrency
        )
    results.record(f"{prefix}_plain_loop", plain, "items/s")
    results.record(
        f"{prefix}_throughput", run.throughput, "items/s", f"{prefix}_plain_loop", plain,
        target_ratio,
    )  # fmt: skip
    record_cpu(prefix, run.cpu, len(blobs), plain_cpu, plain_servers)
    if on_run is not None:
        on_run(run)


def _latencies(prefix: str) -> Callable[[PlatformRun], None]:
    def record(run: PlatformRun) -> None:
        runs = (("", run.latencies_ms, True), ("paced_", run.paced_ms, True),
                ("idle_", run.idle_ms, False))  # fmt: skip
        for kind, latencies, targeted in runs:
            if not latencies:
                continue
            for q, target in ((50, 50.0), (95, None), (99, 250.0)):
                name = f"{prefix}_{kind}latency_p{q}"
                value = _percentile(latencies, q)
                if target is None or not targeted:
                    results.record(name, value, "ms")
                else:
                    results.record(
                        name, value, "ms", f"target {target:g} ms", target, 1.0,
                        higher_is_better=False,
                    )  # fmt: skip

    return record


async def run() -> None:
    """Measure and record the figures (see the module docstring)."""
    settings = E2EBenchSettings()
    digits = list(_cycle(digit_images(500), settings.items))
    documents = list(_cycle(text_images(50), settings.ocr_items))
    async with isolated_stack("bench-e2e", root=BenchSettings().bench_dir) as stack:
        await measure(stack, "e2e.digits", "digits-classifier", digits, settings, 0.5,
                      _latencies("e2e.digits"))  # fmt: skip
        if documents:
            await measure(stack, "e2e.ocr", "ocr-text", documents, settings, 0.9)
