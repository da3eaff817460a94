"""Predict outcomes: the ``prediction.completed.v1`` / ``prediction.failed.v1`` events of
one request (built by workers, and by an undeploy for the requests left behind), and the
``prediction.started.v1`` of a batch a worker takes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from common.contracts import (
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
    PredictionFailed,
    PredictionStarted,
    PredictRequest,
    StartedExecution,
)
from common.envelope import CloudEvent, make_event, utcnow
from model_serving_service.domain.requests import outcome_event_id

SOURCE = "/services/model-serving"
"""CloudEvents ``source`` of model-serving's events."""


def completed_event(
    request: PredictRequest,
    key: str,
    *,
    service_id: str,
    replica_id: str,
    model: ModelRef,
    annotations: list[PredictedAnnotation],
    started_at: datetime,
) -> CloudEvent[Any]:
    """``prediction.completed.v1`` of the request with idempotency key ``key``."""
    data = PredictionCompleted(
        execution_id=request.execution_id,
        service_id=service_id,
        project_id=request.project_id,
        dataset_id=request.item.dataset_id,
        item_id=request.item.id,
        replica_id=replica_id,
        model=model,
        annotations=annotations,
        started_at=started_at,
        finished_at=utcnow(),
        origin=request.origin,
        attempt=request.attempt,
    )
    return _outcome(data, request, key)


def started_events(
    requests: Sequence[PredictRequest],
    *,
    service_id: str,
    replica_id: str,
    started_at: datetime,
) -> list[CloudEvent[Any]]:
    """The ``prediction.started.v1`` of a batch: one per project in it (a service's queue
    carries one project's requests, so one in practice); none for an empty batch."""
    by_project: dict[str, list[PredictRequest]] = {}
    for request in requests:
        by_project.setdefault(request.project_id, []).append(request)
    return [
        make_event(
            PredictionStarted(
                service_id=service_id,
                project_id=project_id,
                replica_id=replica_id,
                started_at=started_at,
                executions=[
                    StartedExecution(execution_id=r.execution_id, attempt=r.attempt) for r in batch
                ],
            ),
            source=SOURCE,
            subject=service_id,
            correlationid=batch[0].execution_id if len(batch) == 1 else None,
        )
        for project_id, batch in by_project.items()
    ]


def failed_event(
    request: PredictRequest,
    key: str,
    *,
    service_id: str,
    reason: str,
    retryable: bool,
    replica_id: str | None = None,
) -> CloudEvent[Any]:
    """``prediction.failed.v1`` of the request with idempotency key ``key``."""
    data = PredictionFailed(
        execution_id=request.execution_id,
        service_id=service_id,
        project_id=request.project_id,
        item_id=request.item.id,
        replica_id=replica_id,
        reason=reason[:2000],
        retryable=retryable,
    )
    return _outcome(data, request, key)


def _outcome(
    data: PredictionCompleted | PredictionFailed, request: PredictRequest, key: str
) -> CloudEvent[Any]:
    return make_event(
        data,
        source=SOURCE,
        subject=request.item.id,
        correlationid=request.execution_id,
        event_id=outcome_event_id(key),
    )
