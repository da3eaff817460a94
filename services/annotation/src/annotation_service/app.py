"""Composition root of the annotation service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from annotation_service import api, handlers
from annotation_service.adapters.datasets import Datasets, ModelServices
from annotation_service.deps import Deps
from annotation_service.repository import Repository
from annotation_service.settings import Settings
from common.auth import KeyIntrospector
from common.service import ServiceRuntime, build_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the annotation app: prediction and item handlers, task and export API."""

    async def setup(runtime: ServiceRuntime) -> Deps:
        repo = Repository(runtime.pool, runtime.topology)
        introspector = KeyIntrospector(settings.auth_url, ttl_seconds=settings.auth_cache_seconds)
        runtime.resources.push_async_callback(introspector.close)
        datasets = Datasets(settings.auth_url)
        runtime.resources.push_async_callback(datasets.close)
        services = None
        if settings.model_serving_url:
            services = ModelServices(settings.model_serving_url)
            runtime.resources.push_async_callback(services.close)
        handlers.consume_predictions(
            runtime,
            repo,
            prefetch=settings.ingest_prefetch,
            batch_max=settings.ingest_batch_max,
            writers=settings.ingest_writers,
        )
        handlers.consume_item_events(
            runtime, repo, prefetch=settings.ingest_prefetch, batch_max=settings.ingest_batch_max
        )
        runtime.consumer_queues.extend(
            handlers.register(
                runtime.broker,
                runtime.topology,
                repo,
                runtime.metrics,
                prefetch=settings.ingest_prefetch,
                cancel_retention_seconds=settings.cancel_retention_seconds,
            )
        )
        return Deps(
            settings=settings,
            repo=repo,
            introspector=introspector,
            datasets=datasets,
            services=services,
        )

    return build_service_app(
        "annotation",
        settings,
        migrations=MIGRATIONS,
        setup=setup,
        routers=[api.router],
        title="prelabel annotation service",
    )
