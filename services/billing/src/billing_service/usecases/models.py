"""The report per model version: what pre-labeling cost and what people accepted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from billing_service.domain.errors import BillingError
from billing_service.domain.meters import as_utc
from billing_service.domain.models import ModelUsage, usage_by_model
from billing_service.repository import Repository


@dataclass(frozen=True)
class ModelReport:
    """Figures per model version of a project within a window."""

    project_id: str
    start: datetime | None
    end: datetime
    models: list[ModelUsage]


async def by_model(
    repo: Repository, project_id: str, start: datetime | None, end: datetime | None
) -> ModelReport:
    """Runtime, cost, predictions, reviews and cost per accepted label per model version
    in ``[start, end)`` (``start`` ``None``: since ever; ``end`` ``None``: now)."""
    now = datetime.now(UTC)
    try:
        start = as_utc(start) if start is not None else None
        end = as_utc(end) if end is not None else now
    except OverflowError as exc:
        raise BillingError("from and to must be representable in UTC") from exc
    if start is not None and start >= end:
        raise BillingError("from must be before to")
    replicas = await repo.replicas_overlapping(project_id, start, end)
    ran = await repo.versions_by_replica(project_id, [s.replica_id for s, _ in replicas])
    spans = await repo.version_spans(project_id, sorted({s.service_id for s, _ in replicas}))
    models = usage_by_model(
        replicas,
        ran,
        spans,
        await repo.predictions_by_model(project_id, start, end),
        await repo.reviews_by_model(project_id, start, end),
        now=now,
        start=start,
        end=end,
    )
    return ModelReport(project_id, start, end, models)
