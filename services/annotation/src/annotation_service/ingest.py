"""Prediction ingestion: a batch of ``prediction.completed.v1`` bodies, one transaction.

:class:`common.consumer.BatchConsumer` hands over the bodies of up to
``ingest_batch_max`` deliveries at once. Each is parsed and its geometry checked
first, so a bad message is dead-lettered with its reason without failing the
others; the rest are stored together (one multi-row insert for the annotations, one
for the outbox). If that transaction fails, the predictions are stored one by one,
so a single message that cannot be stored fails (and is redelivered) alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import cache

from prometheus_client import Counter

from annotation_service import domain
from annotation_service.domain import AnnotationError, NewAnnotation
from annotation_service.repository import IngestResult
from common.batching import together_or_alone
from common.consumer import DUPLICATE, HANDLED, DeadLetter, Outcome, Retry
from common.contracts import PredictionCompleted
from common.envelope import CloudEvent
from common.messaging import PoisonMessageError, parse_event
from common.observability import metric_name
from common.topology import ANNOTATION

log = logging.getLogger(__name__)

Prediction = tuple[CloudEvent[PredictionCompleted], list[NewAnnotation]]
"""A parsed prediction and the annotation rows it stores."""

Store = Callable[[Sequence[Prediction]], Awaitable[list[IngestResult]]]


@cache
def annotations_stored() -> Counter:
    """Annotations written from predictions (redeliveries add nothing)."""
    return Counter(
        metric_name(ANNOTATION, "annotations_stored_total"),
        "Model annotations stored from prediction.completed.v1.",
    )


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
            duplicate = result.stored == 0 and len(event.data.annotations) > 0
            outcomes[index] = DUPLICATE if duplicate else HANDLED
        annotations_stored().inc(stored)
