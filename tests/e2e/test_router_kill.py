"""Killing the router mid-run: items flow through a running pipeline (Dataset -> Predict
from 0 replicas -> Task) while the trigger-router, a real process, is killed with SIGKILL
and started again; afterwards every item is in the task exactly once.

The other four services run in this process (as in ``conftest.py``); the router runs as
``python -m trigger_router_service`` with the environment the stack derives from its
settings (``environment_of``), so a kill leaves what a crash leaves: unacknowledged
deliveries, outbox rows not yet relayed, transactions cut in the middle, worker
processes without their parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from billing_service.app import create_app as create_billing
from billing_service.settings import Settings as BillingSettings
from common.service import runtime_of
from common.settings import S3SettingsMixin, environment_of
from common.testing.broker import delete_names
from common.testing.servers import free_port, serve_app
from common.topology import ANNOTATION, BILLING, DATASET, MODEL_SERVING, TRIGGER_ROUTER, Topology
from dataset_service.app import create_app as create_dataset
from dataset_service.settings import Settings as DatasetSettings
from model_serving_service.app import create_app as create_model_serving
from scripts.demo import Api, Endpoints
from tests.integration.model_serving.conftest import _cleanup, held_out_digits, ms_settings
from trigger_router_service.settings import Settings as RouterSettings

ADMIN_KEY = "e2e-admin-key"
ITEMS = 60
DEADLINE_S = 180.0
REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTER_HANDLERS = (
    "on_item_event",
    "on_prediction_outcome",
    "on_replica_event",
    "on_service_event",
    "on_budget_event",
    "on_task_item_added",
)
"""The router's consumer queues (it runs in another process: its runtime is not here)."""


async def _until(
    what: str, probe: Callable[[], Awaitable[Any]], deadline_s: float = DEADLINE_S
) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"waited {deadline_s:.0f}s for {what}; last answer {last!r}")


@dataclass
class RouterProcess:
    """The trigger-router as a process of its own, restartable with the same settings."""

    env: dict[str, str]
    url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trigger_router_service"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:

            async def answers() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    pytest.fail(f"the router exited: {self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/readyz")).status_code == 200
                return False

            await _until("the router to be ready", answers, 60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _workers_of(schema: str) -> Iterator[int]:
    """Pids of worker processes started for this test's model-serving schema (a killed
    router leaves its workers running)."""
    marker = f"MODEL_SERVING_DB_SCHEMA={schema}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                yield int(entry.name)


@dataclass
class Stack:
    endpoints: Endpoints
    router: RouterProcess


@pytest.fixture
async def stack(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    topology_prefix: str,
    triton_url: str,
    triton_grpc_url: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    base = f"t_e2e_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{base}_{name}" for name in ("ds", "tr", "ms", "an", "bi")}
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "topology_prefix": topology_prefix,
        "outbox_poll_seconds": 0.2,
    }
    s3: dict[str, Any] = {
        "s3_endpoint_url": s3_settings.s3_endpoint_url,
        "s3_access_key": s3_settings.s3_access_key,
        "s3_secret_key": s3_settings.s3_secret_key,
        "s3_bucket": s3_bucket,
    }
    ms: Any = None
    router: RouterProcess | None = None
    queues: list[str] = []
    apps: list[FastAPI] = []
    try:
        async with contextlib.AsyncExitStack() as running:
            apps.append(
                create_dataset(
                    DatasetSettings(**common, **s3, db_schema=schemas["ds"], admin_key=ADMIN_KEY)
                )
            )
            dataset_url = await running.enter_async_context(serve_app(apps[-1]))
            ms = ms_settings(
                database_url=database_url,
                amqp_url=amqp_url,
                s3=s3_settings,
                bucket=s3_bucket,
                schema=schemas["ms"],
                prefix=topology_prefix,
                auth_url=dataset_url,
                triton_http_url=triton_url,
                triton_grpc_url=triton_grpc_url,
                delivery_limit=5,
            )
            apps.append(
                create_annotation(
                    AnnotationSettings(**common, db_schema=schemas["an"], auth_url=dataset_url)
                )
            )
            annotation_url = await running.enter_async_context(serve_app(apps[-1]))
            apps.append(create_model_serving(ms))
            ms_url = await running.enter_async_context(serve_app(apps[-1]))
            apps.append(
                create_billing(
                    BillingSettings(**common, db_schema=schemas["bi"], auth_url=dataset_url)
                )
            )
            billing_url = await running.enter_async_context(serve_app(apps[-1]))
            port = free_port()
            settings = RouterSettings(
                **common,
                db_schema=schemas["tr"],
                auth_url=dataset_url,
                annotation_url=annotation_url,
                model_serving_url=ms_url,
                http_host="127.0.0.1",
                http_port=port,
                reconcile_seconds=0.25,
                leader_retry_seconds=0.25,
                local_worker_module="model_serving_service.worker",
                model_serving_env=environment_of(ms),
                local_stop_seconds=30,
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_ROUTER_")}
            env.update(environment_of(settings))
            env["PYTHONPATH"] = str(REPO_ROOT)
            router = RouterProcess(env, f"http://127.0.0.1:{port}", tmp_path / "router.log")
            router.start()
            await router.ready()
            yield Stack(
                Endpoints(
                    dataset=dataset_url,
                    trigger_router=router.url,
                    model_serving=ms_url,
                    annotation=annotation_url,
                    billing=billing_url,
                    admin_key=ADMIN_KEY,
                ),
                router,
            )
            router.stop()
    finally:
        if router is not None:
            router.stop()
        for pid in _workers_of(schemas["ms"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if ms is not None:
            await _cleanup(ms, database_url, schemas["ms"], triton_url, amqp_url)
        conn = await asyncpg.connect(database_url)
        try:
            for schema in schemas.values():
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
        p = topology_prefix
        for app in apps:
            with contextlib.suppress(AttributeError):  # an app whose start failed
                queues += runtime_of(app).consumer_queues
        queues += [Topology(p).queue(TRIGGER_ROUTER, handler) for handler in ROUTER_HANDLERS]
        await delete_names(
            amqp_url,
            [n for q in queues for n in Topology.queues_of(q)],
            [
                *(
                    f"{p}{service}.{kind}"
                    for service in (DATASET, TRIGGER_ROUTER, MODEL_SERVING, ANNOTATION, BILLING)
                    for kind in ("events", "dlx", "commands")
                ),
                f"{p}{MODEL_SERVING}.predict",
            ],
        )


@pytest.mark.e2e
async def test_a_router_killed_mid_run_leaves_every_item_in_the_task_exactly_once(
    stack: Stack,
) -> None:
    api = Api(stack.endpoints, timeout_s=60)
    step = "router-kill"
    digits = held_out_digits(ITEMS)
    try:
        project = await api.call(
            "dataset", "POST", "/projects", step=step, expect=(201,), admin=True,
            json={"name": "e2e-router-kill"},
        )  # fmt: skip
        key = await api.call(
            "dataset", "POST", f"/projects/{project['id']}/api-keys", step=step,
            expect=(201,), admin=True, json={"name": "e2e"},
        )  # fmt: skip
        api.api_key = key["key"]
        dataset = await api.call(
            "dataset", "POST", "/datasets", step=step, expect=(201,), json={"name": "digits"}
        )
        model = await api.call(
            "model-serving", "POST", "/catalog/digits-classifier/install", step=step,
            expect=(201,),
        )  # fmt: skip
        service = await api.call(
            "model-serving", "POST", "/services", step=step, expect=(201,),
            json={"model_id": model["id"], "name": "digits", "min_replicas": 0,
                  "max_replicas": 1, "cooldown_seconds": 5, "drain_seconds": 2},
        )  # fmt: skip
        service_id = service["id"]

        async def router_sees_it_ready() -> bool:
            known = await api.call(
                "trigger-router", "GET", f"/services/{service_id}", step=step, expect=(200, 404)
            )
            return bool(known) and known.get("status") == "ready"

        await _until("the router to see the service ready", router_sees_it_ready)
        task = await api.call(
            "annotation", "POST", "/tasks", step=step, expect=(201,),
            json={"name": "review", "dataset_id": dataset["id"]},
        )  # fmt: skip
        pipeline = await api.call(
            "trigger-router", "POST", "/pipelines", step=step, expect=(201,),
            json={
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": dataset["id"]}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {"id": "review", "type": "task", "config": {"task_id": task["id"]}},
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
            },
        )  # fmt: skip
        pid = pipeline["id"]
        await api.call("trigger-router", "POST", f"/pipelines/{pid}/start", step=step)

        async def upload(n: int) -> str:
            item = await api.call(
                "dataset", "POST", f"/datasets/{dataset['id']}/items", step=step,
                expect=(201,), files={"file": (f"d{n}.png", digits[n][1], "image/png")},
            )  # fmt: skip
            return str(item["id"])

        async def task_items(at_least: int) -> list[dict[str, Any]]:
            page = await api.call(
                "annotation", "GET", f"/tasks/{task['id']}/items", step=step,
                params={"limit": 500},
            )  # fmt: skip
            items: list[dict[str, Any]] = page["items"]
            return items if len(items) >= at_least else []

        first = await asyncio.gather(*(upload(n) for n in range(ITEMS // 2)))
        # Mid-run: some items are through, the rest in flight (and more still to come).
        await _until("the first items in the task", lambda: task_items(1))
        stack.router.kill()
        # Uploads while the router is down wait in its queue.
        rest = await asyncio.gather(*(upload(n) for n in range(ITEMS // 2, ITEMS)))
        stack.router.start()
        await stack.router.ready()
        in_task = await _until("every item in the task", lambda: task_items(ITEMS))

        async def all_succeeded() -> dict[str, Any] | None:
            body: dict[str, Any] = await api.call(
                "trigger-router", "GET", f"/pipelines/{pid}", step=step
            )
            return body if body["executions"]["success"] >= ITEMS else None

        done = await _until("every pipeline execution to succeed", all_succeeded)
    finally:
        await api.aclose()

    uploaded = sorted([*first, *rest])
    assert sorted(i["item_id"] for i in in_task) == uploaded  # none twice, none missing
    assert all(i["annotations"] for i in in_task)
    assert done["executions"]["success"] == ITEMS
    assert done["counts"]["review"]["success"] == ITEMS
