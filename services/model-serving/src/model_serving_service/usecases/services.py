"""Model services: deploy, patch, undeploy (with its drain), and the background work of
the service process (deploy probes, resumed work, the janitor)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from common.contracts import PredictRequest
from common.ids import new_id
from common.messaging import PoisonMessageError, parse_event
from model_serving_service.adapters.triton import ModelLoadError, TritonUnavailableError
from model_serving_service.domain.errors import (
    ConflictError,
    NotFoundError,
)
from model_serving_service.domain.outcomes import failed_event
from model_serving_service.domain.requests import execution_key
from model_serving_service.domain.scaling import Scaling, default_concurrency, merge_scaling
from model_serving_service.repository.models import Model
from model_serving_service.repository.outcomes import Outcome
from model_serving_service.repository.services import Service
from model_serving_service.usecases.models import ModelUseCases

log = logging.getLogger(__name__)


class ServiceUseCases(ModelUseCases):
    """Model services of a project."""

    async def deploy(
        self, project_id: str, model_id: str, name: str | None, scaling: Mapping[str, Any]
    ) -> Service:
        """Create a model service: record it, declare its queue, check the model loads."""
        model = await self.get_model(project_id, model_id)
        fields = dict(scaling)
        if fields.get("concurrency") is None:
            fields["concurrency"] = default_concurrency(model.spec.max_batch_size)
        settings = merge_scaling(Scaling(), {k: v for k, v in fields.items() if v is not None})
        service_id = new_id("svc")
        await self.queues.declare(service_id)
        service = await self.repo.insert_service(
            service_id=service_id,
            project_id=project_id,
            model_id=model.id,
            name=name or model.name,
            scaling=settings,
        )
        self._spawn(service.id, self._probe(service, model))
        return service

    async def get_service(self, project_id: str, service_id: str) -> Service:
        """A live service of the project (404 otherwise)."""
        service = await self.repo.get_service(service_id, project_id)
        if service is None:
            raise NotFoundError(f"service {service_id} not found")
        return service

    async def patch(self, project_id: str, service_id: str, changes: Mapping[str, Any]) -> Service:
        """Change scaling settings; the router learns them from ``service.deployed.v1``."""
        service = await self.get_service(project_id, service_id)
        if service.status == "undeploying":
            raise ConflictError(f"service {service_id} is being undeployed")
        scaling = merge_scaling(service.scaling, changes)
        updated = await self.repo.set_scaling(service.id, scaling)
        if updated is None:
            raise ConflictError(f"service {service_id} is being undeployed")
        return updated

    async def undeploy(self, project_id: str, service_id: str) -> Service:
        """Start undeploying: drain the queue, tell the router, remove the queue."""
        service = await self.get_service(project_id, service_id)
        moved = await self.repo.set_status(
            service.id, "undeploying", None, allowed_from=("deploying", "ready", "failed")
        )
        if moved is None:
            moved = await self.get_service(project_id, service_id)
        self._spawn(service.id, self._drain(moved))
        return moved

    async def _probe(self, service: Service, model: Model) -> None:
        """Deploy check: the model must load on Triton once. While Triton does not answer
        the service stays ``deploying`` and the check is tried again with backoff (an
        outage is not a model that cannot load)."""
        delay = self.settings.load_retry_backoff_seconds
        warned = False
        while True:
            try:
                async with self.holds.held(model.triton_name, "deploy"):
                    pass
            except TritonUnavailableError as exc:
                if not warned:
                    log.warning(
                        "deploy check waits for Triton",
                        extra={"service_id": service.id, "error": str(exc)},
                    )
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.load_retry_max_backoff_seconds)
                continue
            except ModelLoadError as exc:
                log.warning("deploy failed", extra={"service_id": service.id, "reason": str(exc)})
                await self.repo.set_status(
                    service.id, "failed", str(exc), allowed_from=("deploying",)
                )
                return
            break
        await self.repo.set_status(service.id, "ready", None, allowed_from=("deploying",))

    async def _drain(self, service: Service) -> None:
        queue = self.queues.queue_name(service.id)
        deadline = time.monotonic() + self.settings.undeploy_drain_seconds
        # 1. Let the replicas finish what is queued.
        while time.monotonic() < deadline:
            depth = await self.queues.depth(queue)
            if depth is None or depth.messages == 0:
                break
            await asyncio.sleep(0.25)
        # 2. The router stops routing and stops the replicas (they drain what they hold).
        await self.repo.set_status(service.id, "undeployed", None, allowed_from=("undeploying",))
        stop_by = time.monotonic() + service.scaling.drain_seconds + 10.0
        while time.monotonic() < stop_by:
            depth = await self.queues.depth(queue)
            if depth is None or depth.consumers == 0:
                break
            await asyncio.sleep(0.25)

        # 3. Whatever is left gets an outcome, then the queues go: the work queue, each
        # retry queue (requests waiting out a delay; removed once drained, so nothing
        # expires from it any more), then the work queue again for any retry that expired
        # back onto it meanwhile.
        def fail(body: bytes) -> Awaitable[None]:
            return self._fail_leftover(service, body)

        failed = await self.queues.drain(queue, fail)
        for retry_queue in self.queues.retry_queue_names(service.id):
            failed += await self.queues.drain(retry_queue, fail)
            await self.queues.delete_queue(retry_queue)
        failed += await self.queues.drain(queue, fail)
        if failed:
            log.info("failed leftover requests", extra={"service_id": service.id, "count": failed})
        await self.queues.delete(service.id)
        log.info("service undeployed", extra={"service_id": service.id})

    async def _fail_leftover(self, service: Service, body: bytes) -> None:
        try:
            event = parse_event(body, PredictRequest)
        except PoisonMessageError:
            log.warning("dropping an unreadable request of an undeployed service")
            return
        request = event.data
        key = execution_key(request.execution_id, request.attempt)
        outcome = failed_event(
            request,
            key,
            service_id=service.id,
            reason=f"service {service.id} was undeployed before the request ran",
            retryable=False,
        )
        await self.repo.record_outcomes([Outcome(key, outcome)])

    def _spawn(self, service_id: str, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background work failed", extra={"service_id": service_id})
            finally:
                self._busy.discard(service_id)

        self._busy.add(service_id)
        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """After a restart: finish deploy probes and undeploys left half-done."""
        for service in await self.repo.services_in("deploying"):
            model = await self.repo.get_model(service.model_id)
            if model is not None and service.id not in self._busy:
                self._spawn(service.id, self._probe(service, model))
        for service in await self.repo.services_in("undeploying"):
            if service.id not in self._busy:
                self._spawn(service.id, self._drain(service))

    async def janitor(self) -> None:
        """Forever: expire dead replicas (billing gets their stop), unload unheld models.

        A replica is lost once its heartbeat is ``hold_stale_seconds`` old, but only when
        the janitor itself has reached the database for that long: after a database
        outage every heartbeat is old, and the replicas that lived through it need one
        horizon to be heard again. One warning per outage, not one per pass.
        """
        reachable_since = time.monotonic()
        failing = False
        while True:
            try:
                if time.monotonic() - reachable_since >= self.settings.hold_stale_seconds:
                    lost = await self.repo.expire_lost_replicas(
                        self.settings.hold_stale_seconds, self.settings.hold_heartbeat_seconds
                    )
                    if lost:
                        log.warning("replicas lost (no heartbeat)", extra={"replicas": lost})
                await self.holds.reconcile(set(await self.repo.all_triton_names()))
                if failing:
                    log.info("janitor passes work again")
                    failing = False
            except Exception as exc:
                reachable_since = time.monotonic()
                if not failing:
                    log.warning(
                        "janitor pass failed; trying again every pass until it works",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                    failing = True
            await asyncio.sleep(self.settings.janitor_seconds)

    async def close(self) -> None:
        """Cancel background work."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
