"""Predictions counted per service and day, idempotent on the execution."""

from __future__ import annotations

from datetime import date

from billing_service.domain.meters import as_utc
from billing_service.repository.base import RepositoryBase
from common.contracts import PredictionCompleted


class UsageRows(RepositoryBase):
    """The ``predictions`` table."""

    async def record_prediction(self, prediction: PredictionCompleted) -> bool:
        """Count a prediction for its service and day, with its replica and model version;
        False when already counted."""
        finished = as_utc(prediction.finished_at)
        inserted = await self.pool.fetchval(
            """INSERT INTO predictions (execution_id, project_id, service_id, day, replica_id,
                   model_name, model_id, model_version, finished_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1""",
            prediction.execution_id,
            prediction.project_id,
            prediction.service_id,
            finished.date(),
            prediction.replica_id,
            prediction.model.name,
            prediction.model.model_id,
            prediction.model.version,
            finished,
        )
        return inserted is not None

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
