"""Prediction ingestion: a batch of ``prediction.completed.v1`` bodies, one transaction.

:class:`common.consumer.BatchConsumer` hands over the bodies of up to
``ingest_batch_max`` deliveries at once. Each is parsed and its geometry checked
first, so a bad message is dead-lettered with its reason without failing the
others; predictions of cancelled executions are acknowledged and store nothing; the rest
are stored together (one multi-row insert for the annotations, one
for the outbox). If that transaction fails, the predictions are stored one by one,
so a single message that cannot be stored fails (and is redelivered) alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from annotation_service import domain
from annotation_service.domain import AnnotationError, NewAnnotation
from annotation_service.domain.events import added_event
from annotation_service.metrics import annotations_stored
from annotation_service.repository import Repository
from common.batching import together_or_alone
from common.consumer import DUPLICATE, HANDLED, DeadLetter, Handled, Outcome, Retry
from common.contracts import PredictionCompleted, TaskItemAdded
from common.envelope import CloudEvent
from common.messaging import PoisonMessageError, parse_event
from common.outbox import OutboxEvent

log = logging.getLogger(__name__)

__all__ = [
    "DISCARDED",
    "DUPLICATE",
    "IngestResult",
    "Prediction",
    "PredictionIngest",
    "store_predictions",
]

Prediction = tuple[CloudEvent[PredictionCompleted], list[NewAnnotation]]
"""A parsed prediction and the annotation rows it stores."""

Store = Callable[[Sequence[Prediction]], Awaitable[list["IngestResult"]]]

DISCARDED = Handled("cancelled")
"""A prediction of a cancelled execution: acknowledged, nothing stored."""


@dataclass(frozen=True)
class IngestResult:
    """What one prediction stored."""

    stored: int
    """Annotations written by this delivery (0 for a redelivery)."""
    added_to_tasks: int
    """Task items created by this delivery."""
    cancelled: bool = False
    """Its execution was cancelled (``execution.cancelled.v1``): nothing stored."""


CANCELLED = IngestResult(0, 0, cancelled=True)


async def store_predictions(repo: Repository, batch: Sequence[Prediction]) -> list[IngestResult]:
    """Store several predictions (each with the rows
    :func:`domain.annotations_from_prediction` made of it) in one transaction.

    Idempotent on (execution id, index): rows already there are skipped, and so
    are their events. Items join the tasks whose rules accept the prediction.

    A prediction whose execution (at its attempt) was cancelled stores nothing and adds
    no item to a task. The check holds the executions' shared advisory locks, which a
    cancel takes exclusively (:class:`~annotation_service.repository.cancels.Cancels`):
    a cancel committed first is seen here, and one that commits after this transaction
    sees (and removes) what it stored.
    """
    async with repo.pool.acquire() as conn, conn.transaction():
        await repo.lock_executions(conn, [e.data.execution_id for e, _ in batch], exclusive=False)
        cancelled = await repo.cancelled_of(
            conn, [(e.data.execution_id, e.data.attempt) for e, _ in batch]
        )
        live = [p for p in batch if p[0].data.execution_id not in cancelled]
        stored = iter(await _store(repo, conn, live) if live else [])
    return [
        CANCELLED if event.data.execution_id in cancelled else next(stored) for event, _ in batch
    ]


async def _store(
    repo: Repository, conn: asyncpg.Connection, batch: Sequence[Prediction]
) -> list[IngestResult]:
    """Store the predictions of ``batch`` in the caller's transaction."""
    predictions = [event for event, _ in batch]
    inserted = await repo.insert_model_annotations(conn, [rows for _, rows in batch])
    # A prediction's rows commit together, so an execution either stored all its
    # rows now or none (a redelivery). Rows are credited to the first delivery in
    # the batch that carries them: a duplicate inside one batch stores nothing,
    # like a later redelivery.
    stored_per_event: list[list[NewAnnotation]] = []
    for event, rows in batch:
        execution = event.data.execution_id
        if rows and execution in inserted:
            inserted.discard(execution)
            stored_per_event.append(rows)
        else:
            stored_per_event.append([])
    now = datetime.now(UTC)
    events: list[OutboxEvent] = [
        domain.created_event(rows, p.correlationid, now)
        for p, rows in zip(predictions, stored_per_event, strict=True)
        if rows
    ]
    added = await _auto_add(repo, conn, predictions)
    events.extend(
        added_event(
            TaskItemAdded(task_id=task_id, project_id=p.data.project_id, item_id=p.data.item_id),
            p.correlationid,
        )
        for task_id, p in added
    )
    await repo.publish(conn, events)
    added_per_event: dict[int, int] = {}
    for _, p in added:
        added_per_event[id(p)] = added_per_event.get(id(p), 0) + 1
    return [
        IngestResult(stored=len(rows), added_to_tasks=added_per_event.get(id(p), 0))
        for p, rows in zip(predictions, stored_per_event, strict=True)
    ]


async def _auto_add(
    repo: Repository,
    conn: asyncpg.Connection,
    predictions: Sequence[CloudEvent[PredictionCompleted]],
) -> list[tuple[str, CloudEvent[PredictionCompleted]]]:
    """Add predicted items to the tasks that ask for them; return (task, prediction)
    for each item that entered a task now."""
    keys = sorted({(p.data.project_id, p.data.dataset_id) for p in predictions})
    rules = await repo.auto_add_rules(conn, keys)
    if not rules:
        return []
    # One row per (task, item): a statement may not touch the same row twice.
    wanted: dict[tuple[str, str], CloudEvent[PredictionCompleted]] = {}
    for p in predictions:
        for rule in rules:
            if rule.accepts(p.data):
                wanted.setdefault((rule.task_id, p.data.item_id), p)
    if not wanted:
        return []
    return await repo.add_predicted(conn, wanted)


class PredictionIngest:
    """The batch handler of ``annotation.on_prediction_completed``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, bodies: Sequence[bytes]) -> list[Outcome]:
        """One outcome per body: handled (ok or duplicate), dead-lettered, or retried."""
        outcomes: list[Outcome] = [HANDLED] * len(bodies)
        ready: list[tuple[int, Prediction]] = []
        for index, body in enumerate(bodies):
            try:
                event = parse_event(body, PredictionCompleted)
                rows = domain.annotations_from_prediction(event.data)
            except PoisonMessageError as exc:
                outcomes[index] = DeadLetter(str(exc))
            except AnnotationError as exc:
                outcomes[index] = DeadLetter(f"{event.type} {event.id}: {exc.message}")
            else:
                ready.append((index, (event, rows)))
        if ready:
            await self._store_all(ready, outcomes)
        return outcomes

    async def _store_all(
        self, ready: list[tuple[int, Prediction]], outcomes: list[Outcome]
    ) -> None:
        results = await together_or_alone([prediction for _, prediction in ready], self._store)
        stored = 0
        for (index, (event, _)), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "storing a prediction failed; it will be redelivered",
                    extra={"event_id": event.id, "error": f"{type(result).__name__}: {result}"},
                )
                outcomes[index] = Retry(f"{type(result).__name__}: {result}")
                continue
            stored += result.stored
            if result.cancelled:
                outcomes[index] = DISCARDED
                continue
            duplicate = result.stored == 0 and len(event.data.annotations) > 0
            outcomes[index] = DUPLICATE if duplicate else HANDLED
        annotations_stored().inc(stored)
