"""What the report per model version reads: replicas overlapping a window, which model
versions each replica and service predicted with, predictions and reviews per version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from billing_service.domain.meters import ReplicaState
from billing_service.domain.models import Key, ModelVersion, ReviewCounts, VersionSpan
from billing_service.repository.base import RepositoryBase, replica_state

_WINDOW = "($2::timestamptz IS NULL OR {column} >= $2) AND {column} < $3"


def _version(row: asyncpg.Record) -> ModelVersion | None:
    if row["model_version"] is None:
        return None
    return ModelVersion(row["model_name"], row["model_id"], row["model_version"])


class ModelUsageRows(RepositoryBase):
    """Reads across ``replicas``, ``predictions`` and ``reviews`` for one project."""

    async def replicas_overlapping(
        self, project_id: str, start: datetime | None, end: datetime
    ) -> list[tuple[ReplicaState, Decimal]]:
        """Replicas of the project metered at some moment of ``[start, end)``."""
        rows = await self.pool.fetch(
            """SELECT * FROM replicas WHERE project_id = $1
               AND COALESCE(started_at, started_hint) IS NOT NULL
               AND COALESCE(started_at, started_hint) < $3
               AND ($2::timestamptz IS NULL OR stopped_at IS NULL OR stopped_at > $2)
               ORDER BY COALESCE(started_at, started_hint), replica_id""",
            project_id,
            start,
            end,
        )
        return [(replica_state(r), r["rate"]) for r in rows]

    async def versions_by_replica(
        self, project_id: str, replica_ids: Sequence[str]
    ) -> dict[str, dict[ModelVersion, int]]:
        """Predictions per model version of each replica (whenever they finished)."""
        rows = await self.pool.fetch(
            """SELECT replica_id, model_name, model_id, model_version, count(*) AS n
               FROM predictions WHERE project_id = $1 AND replica_id = ANY($2::text[])
               AND model_version IS NOT NULL GROUP BY 1, 2, 3, 4""",
            project_id,
            list(replica_ids),
        )
        ran: dict[str, dict[ModelVersion, int]] = {}
        for r in rows:
            version = _version(r)
            assert version is not None
            ran.setdefault(r["replica_id"], {})[version] = r["n"]
        return ran

    async def version_spans(
        self, project_id: str, service_ids: Sequence[str]
    ) -> dict[str, list[VersionSpan]]:
        """When each service predicted with each of its model versions."""
        rows = await self.pool.fetch(
            """SELECT service_id, model_name, model_id, model_version,
                      min(finished_at) AS first, max(finished_at) AS last
               FROM predictions WHERE project_id = $1 AND service_id = ANY($2::text[])
               AND model_version IS NOT NULL AND finished_at IS NOT NULL
               GROUP BY 1, 2, 3, 4""",
            project_id,
            list(service_ids),
        )
        spans: dict[str, list[VersionSpan]] = {}
        for r in rows:
            version = _version(r)
            assert version is not None
            spans.setdefault(r["service_id"], []).append(
                VersionSpan(version, r["first"], r["last"])
            )
        return spans

    async def predictions_by_model(
        self, project_id: str, start: datetime | None, end: datetime
    ) -> dict[Key, int]:
        """Predictions that finished in ``[start, end)`` per service and model version."""
        rows = await self.pool.fetch(
            f"""SELECT service_id, model_name, model_id, model_version, count(*) AS n
                FROM predictions WHERE project_id = $1 AND model_version IS NOT NULL
                AND {_WINDOW.format(column="finished_at")} GROUP BY 1, 2, 3, 4""",
            project_id,
            start,
            end,
        )
        return {(r["service_id"], _version(r)): r["n"] for r in rows}

    async def reviews_by_model(
        self, project_id: str, start: datetime | None, end: datetime
    ) -> dict[Key, ReviewCounts]:
        """The latest decisions made in ``[start, end)`` per service and model version
        (task items without a model are left out)."""
        rows = await self.pool.fetch(
            f"""SELECT service_id, model_name, model_id, model_version,
                       count(*) AS reviewed,
                       count(*) FILTER (WHERE accepted_unchanged AND status = 'approved'
                                        AND NOT auto_accepted) AS accepted,
                       count(*) FILTER (WHERE auto_accepted) AS auto
                FROM reviews WHERE project_id = $1 AND model_version IS NOT NULL
                AND {_WINDOW.format(column="reviewed_at")} GROUP BY 1, 2, 3, 4""",
            project_id,
            start,
            end,
        )
        return {
            (r["service_id"], _version(r)): ReviewCounts(r["reviewed"], r["accepted"], r["auto"])
            for r in rows
        }
