"""model-serving in-process against the real PostgreSQL, RabbitMQ, S3 and Triton.

Triton is shared by every test (started by ``scripts/stack.py up --no-services``):
each test's models get unique names (their ids), and every model a test's schema
installed is unloaded and its directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from fastapi import FastAPI
from PIL import Image, ImageDraw, ImageFont

from common.contracts import ItemSnapshot, PredictRequest
from common.envelope import make_event, utcnow
from common.s3 import blob_key, s3_client
from common.service import ServiceRuntime, runtime_of
from common.settings import S3SettingsMixin
from common.testing.broker import EventProbe, delete_names, probe_exchange, publish_raw
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING, Topology
from model_serving_service.app import create_app
from model_serving_service.settings import Settings
from model_serving_service.worker.replica import Worker
from tests.conftest import AuthService

REPO_ROOT = Path(__file__).resolve().parents[3]


def model_repository() -> Path:
    """The model repository the test Triton serves."""
    configured = os.environ.get("PRELABEL_TRITON_MODEL_REPOSITORY")
    return Path(configured) if configured else REPO_ROOT / ".stack" / "triton" / "models"


def ms_settings(
    *,
    database_url: str,
    amqp_url: str,
    s3: S3SettingsMixin,
    bucket: str,
    schema: str,
    prefix: str,
    auth_url: str,
    triton_http_url: str,
    triton_grpc_url: str,
    **overrides: Any,
) -> Settings:
    """Settings of a test's model-serving (fast polls, short retries, small limits)."""
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "db_schema": schema,
        "topology_prefix": prefix,
        "s3_endpoint_url": s3.s3_endpoint_url,
        "s3_access_key": s3.s3_access_key,
        "s3_secret_key": s3.s3_secret_key,
        "s3_bucket": bucket,
        "auth_url": auth_url,
        "triton_http_url": triton_http_url,
        "triton_grpc_url": triton_grpc_url,
        "model_repository": model_repository(),
        "outbox_poll_seconds": 0.1,
        "delivery_limit": 2,
        "retry_delays": (0.05, 0.1),
        "triton_retry_attempts": 2,
        "triton_retry_backoff_seconds": 0.05,
        "undeploy_drain_seconds": 10.0,
        "batch_delay_ms": 20.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class ModelServingService:
    """The running app, a client holding a project key, and a probe on its events."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    project_id: str
    api_key: str
    events: EventProbe
    s3: Any
    auth_service: AuthService

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    @property
    def topology(self) -> Topology:
        return Topology(
            self.settings.topology_prefix,
            self.settings.delivery_limit,
            tuple(self.settings.retry_delays),
        )

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    async def install(self, catalog_name: str, **options: Any) -> dict[str, Any]:
        response = await self.http.post(
            f"/catalog/{catalog_name}/install", json=options or None, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        model: dict[str, Any] = response.json()
        return model

    async def deploy(self, model_id: str, **scaling: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/services", json={"model_id": model_id, **scaling}, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        service: dict[str, Any] = response.json()
        return service

    async def service(self, service_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/services/{service_id}", headers=self.auth())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(
        self, service_id: str, status: str, timeout: float = 60
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            service = await self.service(service_id)
            return service if service["status"] == status else None

        return await wait_until(reached, timeout=timeout, interval=0.1, message=f"status {status}")

    async def put_item(
        self, data: bytes, mimetype: str, *, name: str = "item.png", dataset_id: str = "ds_test"
    ) -> ItemSnapshot:
        """Store a blob content-addressed (as the dataset service does) and describe it."""
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha)
        await self.s3.put_object(
            Bucket=self.settings.s3_bucket, Key=key, Body=data, ContentType=mimetype
        )
        now = utcnow()
        return ItemSnapshot(
            id=f"item_{uuid.uuid4().hex[:12]}",
            project_id=self.project_id,
            dataset_id=dataset_id,
            name=name,
            filename=f"/{name}",
            dir="/",
            created_at=now,
            updated_at=now,
            metadata={
                "system": {"mimetype": mimetype, "size": len(data), "sha256": sha, "blob_key": key},
                "user": {},
            },
        )

    async def send(
        self,
        service_id: str,
        item: ItemSnapshot,
        *,
        execution_id: str | None = None,
        body: bytes | None = None,
    ) -> str:
        """Publish a predict request the way the trigger-router does; return its execution id."""
        execution_id = execution_id or f"exe_{uuid.uuid4().hex[:12]}"
        if body is None:
            request = PredictRequest(
                execution_id=execution_id,
                service_id=service_id,
                project_id=self.project_id,
                item=item,
            )
            event = make_event(
                request,
                source="/services/trigger-router",
                subject=item.id,
                correlationid=execution_id,
            )
            body = event.to_json_bytes()
        await publish_raw(
            self.settings.amqp,
            self.topology.predict_exchange,
            service_id,
            body,
            exchange_type="direct",
        )
        return execution_id

    def outcomes(self, execution_id: str) -> list[dict[str, Any]]:
        """Outcome events seen so far for one execution."""
        return [
            m.body
            for m in self.events.messages
            if m.routing_key in {"prediction.completed.v1", "prediction.failed.v1"}
            and m.body["data"]["execution_id"] == execution_id
        ]

    async def wait_outcomes(
        self, execution_ids: list[str], timeout: float = 60
    ) -> dict[str, dict[str, Any]]:
        """Wait until every execution has an outcome; return the first of each."""

        async def all_in() -> dict[str, dict[str, Any]] | None:
            found = {e: self.outcomes(e) for e in execution_ids}
            if all(found.values()):
                return {e: v[0] for e, v in found.items()}
            return None

        return await wait_until(
            all_in, timeout=timeout, interval=0.05, message=f"{len(execution_ids)} outcomes"
        )

    @contextlib.asynccontextmanager
    async def worker(self, service_id: str, **overrides: Any) -> AsyncIterator[Worker]:
        """A replica running in this event loop (stopped, i.e. drained, on exit)."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        worker = Worker(settings, service_id)
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()

    async def dead_letter_count(self, service_id: str) -> int:
        service = await self.service(service_id)
        return int(service["queue"]["dead_letters"] or 0)


@pytest.fixture
def ms_overrides() -> dict[str, Any]:
    """Settings a test gives its model-serving (``@pytest.mark.parametrize("ms_overrides",
    [{...}])`` on the test)."""
    return {}


@pytest.fixture
async def ms(
    ms_overrides: dict[str, Any],
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    pg_schema: str,
    topology_prefix: str,
    triton_url: str,
    triton_grpc_url: str,
    auth_service: AuthService,
) -> AsyncIterator[ModelServingService]:
    settings = ms_settings(
        database_url=database_url,
        amqp_url=amqp_url,
        s3=s3_settings,
        bucket=s3_bucket,
        schema=pg_schema,
        prefix=topology_prefix,
        auth_url=auth_service.url,
        triton_http_url=triton_url,
        triton_grpc_url=triton_grpc_url,
        **ms_overrides,
    )
    app = create_app(settings)
    exchange = f"{topology_prefix}{MODEL_SERVING}.events"
    project_id, api_key = await auth_service.new_project()
    async with (
        s3_client(
            s3_settings.s3_endpoint_url, s3_settings.s3_access_key, s3_settings.s3_secret_key
        ) as s3,
        probe_exchange(amqp_url, exchange) as events,
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://model-serving", timeout=120
        ) as http,
    ):
        yield ModelServingService(
            app, http, settings, project_id, api_key, events, s3, auth_service
        )
    await _cleanup(settings, database_url, pg_schema, triton_url, amqp_url)


async def _cleanup(
    settings: Settings, database_url: str, schema: str, triton_url: str, amqp_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'models'",
            schema,
        )
        triton_names = (
            [r["triton_name"] for r in await conn.fetch(f"SELECT triton_name FROM {schema}.models")]
            if exists
            else []
        )
        service_ids = (
            [r["id"] for r in await conn.fetch(f"SELECT id FROM {schema}.services")]
            if exists
            else []
        )
    finally:
        await conn.close()
    client = triton_http.InferenceServerClient(triton_url)
    try:
        for name in triton_names:
            with contextlib.suppress(Exception):
                client.unload_model(name)
    finally:
        client.close()
    import shutil

    for name in triton_names:
        shutil.rmtree(settings.model_repository / name, ignore_errors=True)
    topology = Topology(settings.topology_prefix)
    queues = [topology.predict_queue(s) for s in service_ids]
    await delete_names(
        amqp_url,
        [n for q in queues for n in Topology.queues_of(q, tuple(settings.retry_delays))],
        [
            topology.predict_exchange,
            topology.events_exchange(MODEL_SERVING),
            topology.dead_letter_exchange(MODEL_SERVING),
        ],
    )


# --------------------------------------------------------------------------- sample data


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def held_out_digits(count: int) -> list[tuple[int, bytes]]:
    """Digits the classifier never saw (scikit-learn's last samples), as scanned-looking
    PNGs: dark ink on white, 4x upscaled."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for index in range(len(digits.target) - count, len(digits.target)):
        pixels = (255 - digits.data[index].reshape(8, 8) / 16.0 * 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST)
        out.append((int(digits.target[index]), png(image)))
    return out


def text_image(lines: list[str], size: int = 36) -> bytes:
    """Black text on white, rendered with Pillow's scalable default font."""
    font = ImageFont.load_default(size=size)
    image = Image.new("RGB", (720, 40 + 80 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((24, 30 + 80 * i), line, fill="black", font=font)
    return png(image)


def astronaut_png() -> bytes:
    """scikit-image's bundled photo of Eileen Collins (one face)."""
    from skimage import data

    return png(Image.fromarray(data.astronaut()))


SampleFactory = Callable[..., bytes]


# --------------------------------------------------------------------------- BYOM

COLOR_MODEL_PY = '''
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Red-vs-blue classifier on 16x16 RGB pixels: logits from the mean colour."""

    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        get = lambda key: float(params.get(key, {}).get("string_value") or 0)
        if get("fail_initialize"):
            raise RuntimeError("weights missing: colors.bin not found")
        time.sleep(get("sleep_initialize"))
        self.sleep_execute = get("sleep_execute")

    def execute(self, requests):
        time.sleep(self.sleep_execute)
        responses = []
        for request in requests:
            pixels = pb_utils.get_input_tensor_by_name(request, "PIXELS").as_numpy()
            mean = pixels.reshape(pixels.shape[0], -1, 3).mean(axis=1)
            if np.any((mean[:, 1] > 0.9) & (mean[:, 0] < 0.1)):
                raise ValueError("green images are not supported")
            red_minus_blue = mean[:, 0] - mean[:, 2]
            logits = np.stack([red_minus_blue, -red_minus_blue], axis=1) * 10
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", logits.astype(np.float32))])
            )
        return responses
'''

COLOR_CONFIG = """
name: "color"
backend: "python"
max_batch_size: 8
input [ { name: "PIXELS" data_type: TYPE_FP32 dims: [ 16, 16, 3 ] } ]
output [ { name: "LOGITS" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

COLOR_SPEC: dict[str, Any] = {
    "input_type": "image",
    "input": {"tensor": "PIXELS", "kind": "image", "width": 16, "height": 16, "dtype": "FP32"},
    "adapter": {"type": "classification", "outputs": {"scores": "LOGITS"}, "softmax": True},
    "labels": ["red", "blue"],
    "max_batch_size": 8,
    "timeout_seconds": 30,
}


def color_archive(
    *, config: str = COLOR_CONFIG, model_py: str = COLOR_MODEL_PY, **parameters: float
) -> bytes:
    """A .tar.gz of the colour model directory; ``parameters`` tune its behaviour
    (``sleep_initialize``, ``sleep_execute``, ``fail_initialize``)."""
    import tarfile

    extra = "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
        for k, v in parameters.items()
    )
    files = {"color/config.pbtxt": (config + extra).encode(), "color/1/model.py": model_py.encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def register_color_model(
    ms: ModelServingService, *, spec: dict[str, Any] | None = None, **parameters: float
) -> dict[str, Any]:
    response = await ms.http.post(
        "/models",
        files={"archive": ("color.tar.gz", color_archive(**parameters), "application/gzip")},
        data={"name": f"color-{uuid.uuid4().hex[:6]}", "spec": json.dumps(spec or COLOR_SPEC)},
        headers=ms.auth(),
    )
    assert response.status_code == 201, response.text
    model: dict[str, Any] = response.json()
    return model


def solid(color: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


# --------------------------------------------------------------------------- broker faults


async def _rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` against the suite's broker (``PRELABEL_TEST_AMQP_URL``: the
    suite's own node under ``make test``, else the machine's); its output."""
    import asyncio
    import os
    from urllib.parse import urlsplit

    from prelabel_stack.components.servers import rabbitmqctl_for
    from prelabel_stack.config import StackConfig, StackError

    url = os.environ.get("PRELABEL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        ctl, env = rabbitmqctl_for(urlsplit(url).port or 5672, StackConfig.from_env())
    except StackError as exc:
        pytest.skip(f"{exc} (needed to close a broker connection)")
    process = await asyncio.create_subprocess_exec(
        *ctl,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode(errors="replace")


async def close_broker_connections(connection_name: str) -> int:
    """Close, from the broker's side (as a broker restart does), every connection whose
    client properties name ``connection_name``; return how many there were. Only those:
    the broker is shared with the other tests."""
    listing = await _rabbitmqctl(
        "list_connections", "--no-table-headers", "pid", "client_properties"
    )
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{connection_name}"}}' in line
    ]
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "test: broker connection closed")
    return len(pids)


class PortProxy:
    """A TCP port in front of a real server that can be taken away and given back: while
    closed, nobody listens on it (connection refused) and the connections through it are
    cut, as in an outage of the server behind it; the server itself, shared by the other
    tests, is not touched."""

    def __init__(self, target: str) -> None:
        from common.testing.servers import free_port

        host, _, port = target.rpartition(":")
        self.target_host = host or "127.0.0.1"
        self.target_port = int(port)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server: Any = None
        self._pipes: set[Any] = set()

    async def open(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        import asyncio

        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        await asyncio.sleep(0)

    async def _serve(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update({writer, up_writer})

        async def pump(source: Any, sink: Any) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                sink.transport.abort()
                self._pipes.discard(sink)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def port_proxy(target: str, *, open_now: bool = False) -> AsyncIterator[PortProxy]:
    """A :class:`PortProxy` to ``target`` (``host:port``), closed on exit."""
    proxy = PortProxy(target)
    if open_now:
        await proxy.open()
    try:
        yield proxy
    finally:
        await proxy.close()
