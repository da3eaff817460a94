"""Predictions counted per service and day, idempotent on the execution."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from billing_service.domain.meters import as_utc
from billing_service.repository.base import RepositoryBase
from common.contracts import PredictionCompleted


class UsageRows(RepositoryBase):
    """The ``predictions`` table."""

    async def record_predictions(self, predictions: Sequence[PredictionCompleted]) -> list[bool]:
        """Count predictions (one statement) for their services and days, with their
        replicas and model versions; per prediction whether it was counted now (False:
        counted before, or earlier in ``predictions``)."""
        finished = [as_utc(p.finished_at) for p in predictions]
        rows = await self.pool.fetch(
            """INSERT INTO predictions (execution_id, project_id, service_id, day, replica_id,
                   model_name, model_id, model_version, finished_at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::text[],
                   $6::text[], $7::text[], $8::text[], $9::timestamptz[])
               ON CONFLICT DO NOTHING RETURNING execution_id""",
            [p.execution_id for p in predictions],
            [p.project_id for p in predictions],
            [p.service_id for p in predictions],
            [f.date() for f in finished],
            [p.replica_id for p in predictions],
            [p.model.name for p in predictions],
            [p.model.model_id for p in predictions],
            [p.model.version for p in predictions],
            finished,
        )
        new = {row["execution_id"] for row in rows}
        counted: list[bool] = []
        for p in predictions:
            counted.append(p.execution_id in new)
            new.discard(p.execution_id)
        return counted

    async def predictions_between(
        self, project_id: str, since: date, until: date
    ) -> dict[tuple[str, date], int]:
        """Predictions per (service, day)."""
        rows = await self.pool.fetch(
            """SELECT service_id, day, count(*) AS n FROM predictions
               WHERE project_id = $1 AND day BETWEEN $2 AND $3 GROUP BY 1, 2""",
            project_id,
            since,
            until,
        )
        return {(r["service_id"], r["day"]): r["n"] for r in rows}
