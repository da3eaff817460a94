"""The worker's intake: the predict queue consumed by :class:`common.consumer.BatchConsumer`
(linger batching, each request settled on its own), one batch at a time through the
pipeline, each outcome recorded in the outbox before its request is settled.

Cancels: when a batch is taken, requests whose execution the trigger-router cancelled
(``execution.cancelled.v1``, recorded by the service in ``cancelled_executions``, up to the
cancelled attempt) are skipped: acked with no outcome and no Triton call (the router's
ledger already says ``cancelled``). The others are announced in the same transaction with
one ``prediction.started.v1`` (the router marks them ``in-progress``). A batch that waited
for the model load asks again just before the model runs, so a cancel that arrived during
a cold start still prevents the prediction; a cancel that arrives later does not stop a
request already with Triton: its outcome is published and discarded downstream (the router
ignores it, the annotation service does not keep its annotations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from common.consumer import DUPLICATE, HANDLED, DeadLetter, Delivery, Outcome, Retry
from common.contracts import ModelRef, PredictRequest
from common.envelope import CloudEvent
from common.messaging import PoisonMessageError, parse_event, retries_of
from model_serving_service import metrics
from model_serving_service.domain.outcomes import completed_event, failed_event, started_events
from model_serving_service.domain.requests import execution_key, is_last_delivery
from model_serving_service.repository import Repository
from model_serving_service.repository.models import Model
from model_serving_service.repository.outcomes import Outcome as Recorded
from model_serving_service.worker.pipeline import (
    Completed,
    Failed,
    Pipeline,
    Request,
    Result,
    Skipped,
)

log = logging.getLogger(__name__)


class Intake:
    """Handles the deliveries of one batch: parse, drop duplicates, predict, record."""

    def __init__(
        self,
        *,
        service_id: str,
        replica_id: str,
        model: Model,
        repo: Repository,
        pipeline: Pipeline,
        delivery_limit: int,
        retries_allowed: int,
    ) -> None:
        self.service_id = service_id
        self.replica_id = replica_id
        self.model = model
        self.repo = repo
        self.pipeline = pipeline
        self.delivery_limit = delivery_limit
        self.retries_allowed = retries_allowed
        self._retrying = False

    async def handle(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """One settlement per delivery (see :class:`common.consumer.BatchConsumer`)."""
        settled: list[Outcome | None] = [None] * len(deliveries)
        try:
            await self._handle(deliveries, settled)
        except Exception:
            log.exception("batch failed; requeueing its requests")
        outcomes: list[Outcome] = []
        for outcome in settled:
            if outcome is None:
                metrics.PREDICTIONS.labels("requeued").inc()
                outcome = Retry("batch failed")
            outcomes.append(outcome)
        return outcomes

    async def _handle(self, deliveries: Sequence[Delivery], settled: list[Outcome | None]) -> None:
        live: dict[Request, int] = {}
        for index, delivery in enumerate(deliveries):
            parsed = self._parse(delivery)
            if isinstance(parsed, DeadLetter):
                metrics.PREDICTIONS.labels("dead_lettered").inc()
                settled[index] = parsed
            else:
                live[parsed] = index
        if not live:
            return
        done = await self.repo.claimed([r.key for r in live])
        for request in [r for r in live if r.key in done]:
            metrics.PREDICTIONS.labels("duplicate").inc()
            settled[live.pop(request)] = DUPLICATE
        if not live:
            return
        cancelled = await self._begin(list(live))
        for request in cancelled:
            metrics.PREDICTIONS.labels("cancelled").inc()
            settled[live.pop(request)] = HANDLED
        if not live:
            return
        results = await self.pipeline.run(list(live), self._cancelled)
        for request, outcome in (await self._record(results)).items():
            settled[live[request]] = outcome

    async def _begin(self, requests: list[Request]) -> set[Request]:
        """The cancelled requests of a batch just taken; ``prediction.started.v1`` for the
        rest (one transaction)."""

        def started(cancelled: set[str]) -> list[CloudEvent[Any]]:
            chosen = [r for r in requests if r.request.execution_id not in cancelled]
            if not chosen:
                return []
            return started_events(
                [r.request for r in chosen],
                service_id=self.service_id,
                replica_id=self.replica_id,
                started_at=min(r.started_at for r in chosen),
            )

        ids = await self.repo.begin(
            [(r.request.execution_id, r.request.attempt) for r in requests], started
        )
        return {r for r in requests if r.request.execution_id in ids}

    async def _cancelled(self, requests: list[Request]) -> set[Request]:
        """Which of ``requests`` were cancelled by now."""
        ids = await self.repo.cancelled(
            [(r.request.execution_id, r.request.attempt) for r in requests]
        )
        return {r for r in requests if r.request.execution_id in ids}

    def _parse(self, delivery: Delivery) -> Request | DeadLetter:
        try:
            event = parse_event(delivery.body, PredictRequest)
        except PoisonMessageError as exc:
            return DeadLetter(str(exc))
        if event.data.service_id != self.service_id:
            return DeadLetter(
                f"request for service {event.data.service_id} reached the queue of "
                f"{self.service_id}"
            )
        return Request(
            event=event,
            key=execution_key(event.data.execution_id, event.data.attempt),
            received=delivery.received,
            started_at=delivery.received_at,
            deadline=delivery.received + self.model.spec.timeout_seconds,
            delivery_count=delivery.delivery_count,
            retries=retries_of(delivery.headers),
        )

    async def _record(self, results: dict[Request, Result]) -> dict[Request, Outcome]:
        """Record the decided outcomes (one transaction); how to settle each request."""
        decided: dict[Request, Failed | Completed] = {}
        gave_up: set[Request] = set()
        requeue: dict[Request, str] = {}
        skipped: set[Request] = set()
        for request, result in _completed_first(results):
            if isinstance(result, Skipped):
                skipped.add(request)
            elif isinstance(result, Completed | Failed):
                decided[request] = result
            elif is_last_delivery(request.delivery_count, self.delivery_limit):
                final = f"{result.reason} (gave up after {self.delivery_limit + 1} deliveries)"
                decided[request] = Failed(final, retryable=True, poison=True)
                gave_up.add(request)
            elif request.retries >= self.retries_allowed:
                # Its delayed retries are spent: record the failure, so the execution
                # ends (retryable) instead of its request being dead-lettered unanswered.
                final = f"{result.reason} (gave up after {request.retries} delayed retries)"
                decided[request] = Failed(final, retryable=True, poison=True)
                gave_up.add(request)
            else:
                requeue[request] = result.reason
        recorded = await self.repo.record_outcomes(
            [Recorded(r.key, self._event(r, result)) for r, result in decided.items()]
        )
        settle: dict[Request, Outcome] = {}
        now = time.monotonic()
        for request, result in decided.items():
            if request not in gave_up:
                if request.key not in recorded:
                    label = "duplicate"
                else:
                    label = "completed" if isinstance(result, Completed) else "failed"
                metrics.PREDICTIONS.labels(label).inc()
            metrics.REQUEST_SECONDS.observe(now - request.received)
            if isinstance(result, Failed) and result.poison:
                metrics.PREDICTIONS.labels("dead_lettered").inc()
                settle[request] = DeadLetter(result.reason)
            else:
                settle[request] = HANDLED
        for request in skipped:
            metrics.PREDICTIONS.labels("cancelled").inc()
            settle[request] = HANDLED
        for request, reason in requeue.items():
            log.debug("retrying request later", extra={"key": request.key, "reason": reason})
            metrics.PREDICTIONS.labels("requeued").inc()
            settle[request] = Retry(reason)
        self._note_outage(next(iter(requeue.values()), None), len(requeue))
        return settle

    def _note_outage(self, reason: str | None, count: int) -> None:
        """One warning when requests start being retried later (S3 or Triton away), one
        line when a batch goes through again: not a line per request."""
        if reason is not None and not self._retrying:
            self._retrying = True
            log.warning(
                "requests are retried later until this passes",
                extra={"reason": reason, "count": count},
            )
        elif reason is None and self._retrying:
            self._retrying = False
            log.info("requests go through again")

    def _event(self, request: Request, result: Completed | Failed) -> CloudEvent[Any]:
        if isinstance(result, Completed):
            return completed_event(
                request.request,
                request.key,
                service_id=self.service_id,
                replica_id=self.replica_id,
                model=ModelRef(
                    name=self.model.name, model_id=self.model.id, version=self.model.version
                ),
                annotations=result.annotations,
                started_at=request.started_at,
            )
        return failed_event(
            request.request,
            request.key,
            service_id=self.service_id,
            replica_id=self.replica_id,
            reason=result.reason,
            retryable=result.retryable,
        )


def _completed_first(results: dict[Request, Result]) -> list[tuple[Request, Result]]:
    """Completed, then failed, then undecided: the order outcomes reach the outbox."""
    rank = {Completed: 0, Failed: 1}
    return sorted(results.items(), key=lambda pair: rank.get(type(pair[1]), 2))
