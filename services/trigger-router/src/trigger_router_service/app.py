"""Composition root of the trigger-router service."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from common.auth import KeyIntrospector
from common.service import ServiceRuntime, build_service_app
from trigger_router_service import api, handlers
from trigger_router_service.adapters.datasets import DatasetClient
from trigger_router_service.adapters.models import ModelClient
from trigger_router_service.adapters.scalers import LocalScaler, ScalerBackend
from trigger_router_service.adapters.tasks import TaskClient
from trigger_router_service.deps import Deps
from trigger_router_service.repository import Repository
from trigger_router_service.settings import Settings
from trigger_router_service.usecases.autoscaling import Autoscaler
from trigger_router_service.usecases.pipelines import PipelineEngine
from trigger_router_service.usecases.retries import RetrySweeper
from trigger_router_service.usecases.routing import ItemRouting

MIGRATIONS = Path(__file__).parent / "migrations"


async def make_backend(settings: Settings) -> ScalerBackend:
    """The scaler backend the settings choose."""
    if settings.scaler_backend == "kubernetes":
        from trigger_router_service.adapters.kube import KubernetesScaler

        return await KubernetesScaler.from_settings(settings)
    if settings.scaler_backend == "docker":
        from trigger_router_service.adapters.containers import ContainerScaler

        return ContainerScaler.connect(
            settings.docker_url,
            image=settings.docker_worker_image,
            stack=settings.docker_stack,
            network=settings.docker_network,
            base_env=os.environ,
            extra_env=settings.model_serving_env,
            stop_seconds=settings.local_stop_seconds,
        )
    return LocalScaler(
        module=settings.local_worker_module,
        extra_env=settings.model_serving_env,
        stop_seconds=settings.local_stop_seconds,
        prewarm=settings.local_prewarm,
    )


def create_app(settings: Settings, *, backend: ScalerBackend | None = None) -> FastAPI:
    """Build the trigger-router app: HTTP API, event handlers, item-event router and,
    when ``autoscaler_enabled``, a candidate for the autoscaler's leadership.

    ``backend`` replaces the one the settings choose (tests, embedding).
    """

    async def setup(runtime: ServiceRuntime) -> Deps:
        repo = Repository(
            runtime.pool, runtime.topology, settings.db_schema, settings.dql_max_depth
        )
        keys = KeyIntrospector(settings.auth_url, ttl_seconds=settings.auth_cache_seconds)
        runtime.resources.push_async_callback(keys.close)
        dataset_client = DatasetClient(settings.dataset_url or settings.auth_url)
        runtime.resources.push_async_callback(dataset_client.close)
        pipelines = PipelineEngine(repo)
        tasks = TaskClient(settings.annotation_url)
        runtime.resources.push_async_callback(tasks.close)
        models = ModelClient(settings.model_serving_url)
        runtime.resources.push_async_callback(models.close)
        consumer = handlers.consume_item_events(
            runtime,
            ItemRouting(repo, pipelines),
            prefetch=settings.routing_prefetch,
            max_batch=settings.routing_batch,
            inline_blob_max_bytes=settings.inline_blob_max_bytes,
        )
        handlers.consume_prediction_outcomes(
            runtime,
            repo,
            prefetch=settings.outcome_prefetch,
            max_batch=settings.outcome_batch_max,
            pipelines=pipelines,
            retry=handlers.RetryPolicy(
                settings.prediction_max_attempts,
                settings.prediction_retry_seconds,
                settings.prediction_retry_max_seconds,
            ),
        )
        runtime.consumer_queues.extend(
            handlers.register(
                runtime.broker,
                runtime.topology,
                repo,
                runtime.metrics,
                prefetch=settings.outcome_prefetch,
                pipelines=pipelines,
            )
        )
        sweeper = RetrySweeper(repo, settings.retry_poll_seconds)
        runtime.on_start("retry-sweeper", sweeper.start, sweeper.stop)
        # The autoscaler starts once the broker, the batch consumers, the dead-letter
        # queues and the outbox relay are up, and stops before them.
        autoscaler: Autoscaler | None = None
        if settings.autoscaler_enabled:
            autoscaler = Autoscaler(
                repo=repo,
                backend=backend or await make_backend(settings),
                topology=runtime.topology,
                dsn=settings.dsn,
                schema=settings.db_schema,
                amqp_url=settings.amqp,
                reconcile_seconds=settings.reconcile_seconds,
                leader_retry_seconds=settings.leader_retry_seconds,
                inflight_horizon_seconds=settings.inflight_horizon_seconds,
            )
            runtime.on_start("autoscaler", autoscaler.start, autoscaler.stop)
        return Deps(
            settings=settings,
            repo=repo,
            keys=keys,
            datasets=dataset_client,
            tasks=tasks,
            models=models,
            pipelines=pipelines,
            item_consumer=consumer,
            autoscaler=autoscaler,
        )

    return build_service_app(
        "trigger-router",
        settings,
        migrations=MIGRATIONS,
        setup=setup,
        routers=[api.router],
        title="prelabel trigger-router",
    )
