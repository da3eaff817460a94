"""Composition root of the model-serving service."""

from __future__ import annotations

from pathlib import Path

import tritonclient.http.aio as triton_http
from fastapi import FastAPI

from common.s3 import client_from_settings, ensure_bucket
from common.service import ServiceRuntime, build_service_app
from model_serving_service.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the model-serving app: Triton and S3 clients, readiness on both."""

    async def setup(runtime: ServiceRuntime) -> None:
        triton = triton_http.InferenceServerClient(settings.triton_http_url)
        runtime.resources.push_async_callback(triton.close)
        s3 = await runtime.resources.enter_async_context(client_from_settings(settings))
        await ensure_bucket(s3, settings.s3_bucket)
        runtime.extras.update(triton=triton, s3=s3)

        async def triton_ready() -> None:
            if not await triton.is_server_ready():
                raise ConnectionError(f"Triton at {settings.triton_http_url} is not ready")

        async def s3_ready() -> None:
            await s3.head_bucket(Bucket=settings.s3_bucket)

        runtime.checks.update(triton=triton_ready, s3=s3_ready)

    return build_service_app("model-serving", settings, migrations=MIGRATIONS, setup=setup)
