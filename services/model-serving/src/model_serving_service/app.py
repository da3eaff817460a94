"""Composition root of the model-serving service (the HTTP API process).

Predict workers are separate processes (``python -m model_serving_service.worker``),
started and stopped by the trigger-router's autoscaler.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from common.auth import KeyIntrospector
from common.s3 import client_from_settings, ensure_bucket
from common.service import ServiceRuntime, build_service_app
from model_serving_service import api, handlers
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.adapters.triton import ModelRepository, TritonControl, TritonInference
from model_serving_service.deps import Deps
from model_serving_service.repository import Repository
from model_serving_service.repository.holds import ModelHolds
from model_serving_service.settings import Settings
from model_serving_service.usecases import ModelServing

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the model-serving app: API, Triton clients, work-queue admin, janitor, and the
    handler that records cancelled executions for the workers."""

    async def setup(runtime: ServiceRuntime) -> Deps:
        control = TritonControl(
            settings.triton_http_url, load_timeout=settings.load_timeout_seconds
        )
        runtime.resources.push_async_callback(control.close)
        inference = TritonInference(settings.triton_grpc_url)
        runtime.resources.push_async_callback(inference.close)
        s3 = await runtime.resources.enter_async_context(client_from_settings(settings))
        await ensure_bucket(s3, settings.s3_bucket)
        auth = KeyIntrospector(settings.auth_url, ttl_seconds=settings.auth_cache_seconds)
        runtime.resources.push_async_callback(auth.close)
        queues = PredictQueues(settings.amqp, runtime.topology)
        await queues.connect()
        runtime.resources.push_async_callback(queues.close)
        repo = Repository(runtime.pool, runtime.topology)
        runtime.consumer_queues.extend(
            handlers.register(
                runtime.broker,
                runtime.topology,
                repo,
                runtime.metrics,
                prefetch=settings.handler_prefetch,
                retention_seconds=settings.cancel_retention_seconds,
            )
        )
        usecases = ModelServing(
            settings=settings,
            repo=repo,
            files=ModelRepository(settings.model_repository),
            holds=ModelHolds(runtime.pool, control, stale_seconds=settings.hold_stale_seconds),
            inference=inference,
            queues=queues,
        )
        await usecases.resume()
        janitor = asyncio.create_task(usecases.janitor(), name="model-serving-janitor")

        async def stop_janitor() -> None:
            janitor.cancel()
            await asyncio.gather(janitor, return_exceptions=True)

        async def stop_background() -> None:
            await stop_janitor()
            await usecases.close()

        # Background work (deploy probes, undeploy drains, the janitor) stops before the
        # composition root closes the database pool it uses; and if the start fails
        # before that hook runs, with the other resources.
        runtime.resources.push_async_callback(stop_background)
        runtime.on_start("background", None, stop_background)

        async def triton_ready() -> None:
            if not await control.server_ready():
                raise ConnectionError(f"Triton at {settings.triton_http_url} is not ready")

        async def s3_ready() -> None:
            await s3.head_bucket(Bucket=settings.s3_bucket)

        # Every connection a route uses: the database and the broker (FastStream) are
        # checked by the runtime; the queue manager's own connection (deploy, undeploy,
        # queue depths, dead letters) reconnects on demand and says here whether it can.
        runtime.checks.update(triton=triton_ready, s3=s3_ready, queues=queues.ping)
        return Deps(
            settings=settings, triton=control, s3=s3, auth=auth, usecases=usecases, repo=repo
        )

    app = build_service_app(
        "model-serving",
        settings,
        migrations=MIGRATIONS,
        setup=setup,
        routers=[api.router],
        title="prelabel model-serving service",
    )

    return app
