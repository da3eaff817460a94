"""Composition root of the dataset service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from common.blobs import blob_store
from common.s3 import client_from_settings, ensure_bucket
from common.service import ServiceRuntime, build_service_app
from dataset_service import api, handlers
from dataset_service.adapters.blobs import ItemBlobs
from dataset_service.deps import Deps
from dataset_service.repository import Repository
from dataset_service.settings import Settings
from dataset_service.usecases.items import ItemStore
from dataset_service.usecases.thumbnails import Thumbnails

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the dataset app: HTTP API, ingest handler, S3 client."""

    async def setup(runtime: ServiceRuntime) -> Deps:
        s3 = await runtime.resources.enter_async_context(client_from_settings(settings))
        await ensure_bucket(s3, settings.s3_bucket)
        blobs = blob_store(settings)
        runtime.resources.push_async_callback(blobs.close)
        repo = Repository(runtime.pool, runtime.topology)
        item_blobs = ItemBlobs(s3, blobs, settings.s3_bucket)
        store = ItemStore(
            repo,
            item_blobs,
            settings.max_upload_bytes,
            inline_blob_max_bytes=settings.inline_blob_max_bytes,
        )
        thumbnails = Thumbnails(
            item_blobs,
            max_pixels=settings.thumbnail_max_pixels,
            concurrency=settings.thumbnail_concurrency,
        )
        handlers.register(
            runtime,
            store,
            prefetch=settings.ingest_prefetch,
            batch_max=settings.ingest_batch_max,
        )

        async def s3_ready() -> None:
            await s3.head_bucket(Bucket=settings.s3_bucket)

        runtime.checks["s3"] = s3_ready
        return Deps(settings=settings, s3=s3, repo=repo, store=store, thumbnails=thumbnails)

    app = build_service_app(
        "dataset",
        settings,
        migrations=MIGRATIONS,
        setup=setup,
        routers=[api.router],
        title="prelabel dataset service",
    )

    return app
