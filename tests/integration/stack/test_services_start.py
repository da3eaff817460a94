"""Each of the five services starts as a process (``python -m <pkg>``) and answers /readyz."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from common.settings import S3SettingsMixin
from common.testing.servers import free_port

SERVICES = {
    "dataset": "DATASET_",
    "trigger_router": "TRIGGER_ROUTER_",
    "model_serving": "MODEL_SERVING_",
    "annotation": "ANNOTATION_",
    "billing": "BILLING_",
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_service_process_becomes_ready_and_stops_cleanly(
    service: str,
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    s3_bucket: str,
    triton_url: str,
    triton_grpc_url: str,
    tmp_path: Path,
) -> None:
    prefix, port = SERVICES[service], free_port()
    schema, topology = f"t_{uuid.uuid4().hex[:12]}", f"t{uuid.uuid4().hex[:10]}."
    env = {
        **os.environ,
        f"{prefix}AMQP_URL": amqp_url,
        f"{prefix}DATABASE_URL": database_url,
        f"{prefix}HTTP_PORT": str(port),
        f"{prefix}DB_SCHEMA": schema,
        f"{prefix}TOPOLOGY_PREFIX": topology,
        f"{prefix}S3_ENDPOINT_URL": s3_settings.s3_endpoint_url,
        f"{prefix}S3_BUCKET": s3_bucket,
        f"{prefix}TRITON_HTTP_URL": triton_url,
        f"{prefix}TRITON_GRPC_URL": triton_grpc_url,
        f"{prefix}MODEL_REPOSITORY": str(tmp_path / "models"),
        f"{prefix}EPHEMERAL_TOPOLOGY": "true",
    }
    log = (tmp_path / "service.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"{service}_service", env=env, stdout=log, stderr=log
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            ready: httpx.Response | None = None
            deadline = asyncio.get_running_loop().time() + 60
            while ready is None or ready.status_code != 200:
                if asyncio.get_running_loop().time() > deadline:
                    detail = ready.text if ready is not None else "no answer"
                    pytest.fail(
                        f"{service} not ready in 60 s ({detail}); log: "
                        f"{(tmp_path / 'service.log').read_text()[-2000:]}"
                    )
                if True:
                    if process.returncode is not None:
                        pytest.fail(
                            f"{service} exited: {(tmp_path / 'service.log').read_text()[-2000:]}"
                        )
                    try:
                        ready = await http.get("/readyz")
                    except httpx.TransportError:
                        ready = None
                    await asyncio.sleep(0.1)
            metrics = await http.get("/metrics")
        assert ready.json()["status"] == "ready"
        assert {"database", "broker"} <= set(ready.json()["checks"])
        assert f"prelabel_{service}_messages_handled_total" in metrics.text
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
        # uvicorn re-raises the captured SIGTERM after a graceful shutdown.
        assert code in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "service.log").read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
