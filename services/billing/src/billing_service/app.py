"""Composition root of the billing service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from billing_service import api, handlers
from billing_service.deps import Deps
from billing_service.repository import Repository
from billing_service.settings import Settings
from billing_service.usecases.charging import Charger
from common.auth import KeyIntrospector
from common.service import ServiceRuntime, build_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    """Build the billing app: replica and prediction handlers, charger, budget API."""

    async def setup(runtime: ServiceRuntime) -> Deps:
        repo = Repository(runtime.pool, runtime.topology, settings.rates, settings.default_budget)
        charger = Charger(repo, settings.charge_interval_seconds)
        runtime.on_start("charger", charger.start, charger.stop)
        introspector = KeyIntrospector(settings.auth_url, ttl_seconds=settings.auth_cache_seconds)
        runtime.resources.push_async_callback(introspector.close)
        runtime.consumer_queues.extend(
            handlers.register(
                runtime.broker,
                runtime.topology,
                repo,
                runtime.metrics,
                prefetch=settings.event_prefetch,
            )
        )
        handlers.consume_predictions(
            runtime,
            repo,
            prefetch=settings.prediction_prefetch,
            max_batch=settings.prediction_batch_max,
        )
        return Deps(settings=settings, repo=repo, charger=charger, introspector=introspector)

    return build_service_app(
        "billing",
        settings,
        migrations=MIGRATIONS,
        setup=setup,
        routers=[api.router],
        title="prelabel billing service",
    )
