"""Scale-down: a worker process gets SIGTERM in the middle of a backlog, drains, unloads
its model as the last holder, emits replica.stopped.v1 and exits 0; another replica
finishes the backlog, and every request has exactly one outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import tritonclient.http as triton_http

from common.settings import environment_of
from common.testing.waits import wait_until
from model_serving_service.settings import Settings
from tests.integration.model_serving.conftest import (
    COLOR_SPEC,
    ModelServingService,
    register_color_model,
    solid,
)

REQUESTS = 24


def worker_env(settings: Settings, service_id: str, replica_id: str) -> dict[str, str]:
    """The environment the trigger-router's local backend gives a replica."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_SERVING_")}
    env.update(environment_of(settings))
    env["MODEL_SERVING_WORKER_SERVICE_ID"] = service_id
    env["MODEL_SERVING_WORKER_REPLICA_ID"] = replica_id
    return env


def model_ready(triton_url: str, name: str) -> bool:
    client = triton_http.InferenceServerClient(triton_url)
    try:
        ready: bool = client.is_model_ready(name)
    finally:
        client.close()
    return ready


async def test_sigterm_drains_without_losing_a_request(
    ms: ModelServingService, triton_url: str, tmp_path: Path
) -> None:
    spec: dict[str, Any] = {**COLOR_SPEC, "max_batch_size": 2}
    model = await register_color_model(ms, spec=spec, sleep_execute=0.15)
    service = await ms.deploy(model["id"], concurrency=4, drain_seconds=20)
    await ms.wait_status(service["id"], "ready")
    item = await ms.put_item(solid((200, 0, 0)), "image/png")
    executions = [await ms.send(service["id"], item) for _ in range(REQUESTS)]

    replica_id = f"rep_{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "model_serving_service.worker",
        env=worker_env(ms.settings, service["id"], replica_id),
        stdout=log,
        stderr=log,
    )
    try:
        # Mid-backlog: some outcomes are in, most requests are still queued or held.
        await wait_until(
            lambda: _count(ms, executions, at_least=4), timeout=60, message="first outcomes"
        )
        assert model_ready(triton_url, model["triton_name"])
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        log.close()
    output = (tmp_path / "worker.log").read_text()
    assert code == 0, output

    done_by_first = sum(1 for e in executions if ms.outcomes(e))
    assert done_by_first < REQUESTS, "the backlog ended before SIGTERM; nothing was drained"
    stopped = await ms.events.wait_for(1, routing_key="replica.stopped.v1")
    started = ms.events.of("replica.started.v1")
    assert [e.body["data"]["replica_id"] for e in started] == [replica_id]
    assert stopped[0].body["data"]["replica_id"] == replica_id
    assert stopped[0].body["data"]["started_at"] is not None
    # It was the only holder: the model is unloaded.
    await wait_until(
        lambda: _not_ready(triton_url, model["triton_name"]), timeout=20, message="unloaded"
    )

    # Nothing was lost: the next replica serves the rest.
    async with ms.worker(service["id"]):
        await ms.wait_outcomes(executions, timeout=60)
    counts = [len(ms.outcomes(e)) for e in executions]
    assert counts == [1] * REQUESTS
    assert all(ms.outcomes(e)[0]["type"] == "prelabel.prediction.completed.v1" for e in executions)


async def _count(ms: ModelServingService, executions: list[str], *, at_least: int) -> bool:
    return sum(1 for e in executions if ms.outcomes(e)) >= at_least


async def _not_ready(triton_url: str, name: str) -> bool:
    return not model_ready(triton_url, name)
