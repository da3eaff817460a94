"""Models: catalog installs and registered BYOMs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from model_serving_service.domain.specs import ModelSpec
from model_serving_service.repository.base import RepositoryBase


@dataclass(frozen=True)
class Model:
    """A model in a project: a catalog install or a registered BYOM."""

    id: str
    project_id: str
    name: str
    version: str
    source: str
    catalog_name: str | None
    triton_name: str
    spec: ModelSpec
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Model:
        """Build from a ``models`` row."""
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            version=row["version"],
            source=row["source"],
            catalog_name=row["catalog_name"],
            triton_name=row["triton_name"],
            spec=ModelSpec.model_validate(row["spec"]),
            created_at=row["created_at"],
        )


class ModelRows(RepositoryBase):
    """The ``models`` table."""

    async def insert_model(
        self,
        *,
        model_id: str,
        project_id: str,
        name: str,
        version: str,
        source: str,
        catalog_name: str | None,
        triton_name: str,
        spec: ModelSpec,
    ) -> Model | None:
        """Insert a model; None when the project already has ``name`` at ``version``."""
        row = await self.pool.fetchrow(
            """INSERT INTO models (id, project_id, name, version, source, catalog_name,
                                   triton_name, spec)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT DO NOTHING RETURNING *""",
            model_id,
            project_id,
            name,
            version,
            source,
            catalog_name,
            triton_name,
            spec.model_dump(mode="json"),
        )
        return Model.from_row(row) if row else None

    async def get_model(self, model_id: str, project_id: str | None = None) -> Model | None:
        """A live model (of ``project_id`` when given)."""
        row = await self.pool.fetchrow(
            """SELECT * FROM models WHERE id = $1 AND deleted_at IS NULL
               AND ($2::text IS NULL OR project_id = $2)""",
            model_id,
            project_id,
        )
        return Model.from_row(row) if row else None

    async def list_models(self, project_id: str) -> list[Model]:
        """A project's live models, newest first."""
        rows = await self.pool.fetch(
            """SELECT * FROM models WHERE project_id = $1 AND deleted_at IS NULL
               ORDER BY created_at DESC, id""",
            project_id,
        )
        return [Model.from_row(r) for r in rows]

    async def model_services_in_use(self, model_id: str) -> list[str]:
        """Services (not undeployed) that serve ``model_id``."""
        rows = await self.pool.fetch(
            "SELECT id FROM services WHERE model_id = $1 AND status <> 'undeployed' ORDER BY id",
            model_id,
        )
        return [r["id"] for r in rows]

    async def delete_model(self, model_id: str) -> bool:
        """Mark a model deleted."""
        done = await self.pool.fetchval(
            """UPDATE models SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL
               RETURNING 1""",
            model_id,
        )
        return done is not None

    async def all_triton_names(self) -> list[str]:
        """Triton names of every live model of this schema."""
        rows = await self.pool.fetch("SELECT triton_name FROM models WHERE deleted_at IS NULL")
        return [r["triton_name"] for r in rows]
