"""Datasets: create, list, look up (with item counts), delete with their items."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from common.contracts import ItemDeleted, ItemSnapshot
from common.ids import new_id
from dataset_service.domain import ConflictError, NotFoundError
from dataset_service.repository.base import ITEM_COLUMNS, Store, item_of

DATASET_CACHE_SIZE = 10_000
"""Datasets whose project ``dataset_project`` remembers (forgotten all at once when full)."""


class Dataset(BaseModel):
    """A dataset."""

    id: str
    project_id: str
    name: str
    description: str
    created_at: datetime
    item_count: int = 0


class Datasets(Store):
    """Datasets."""

    async def dataset_exists(self, project_id: str, dataset_id: str) -> None:
        """Raise ``NotFoundError`` unless the dataset is the project's (cheap: no counts)."""
        found = await self.pool.fetchval(
            "SELECT 1 FROM datasets WHERE id = $1 AND project_id = $2", dataset_id, project_id
        )
        if found is None:
            raise NotFoundError(f"dataset {dataset_id} not found")

    async def create_dataset(self, project_id: str, name: str, description: str) -> Dataset:
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO datasets (id, project_id, name, description) VALUES ($1, $2, $3, $4)
                   RETURNING *""",
                new_id("ds"),
                project_id,
                name,
                description,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a dataset named {name!r} already exists in this project") from exc
        return Dataset(**dict(row))

    async def list_datasets(self, project_id: str, name: str | None = None) -> list[Dataset]:
        rows = await self.pool.fetch(
            """SELECT d.*, (SELECT count(*) FROM items i WHERE i.dataset_id = d.id) AS item_count
               FROM datasets d WHERE d.project_id = $1 AND ($2::text IS NULL OR d.name = $2)
               ORDER BY d.created_at, d.id""",
            project_id,
            name,
        )
        return [Dataset(**dict(r)) for r in rows]

    async def get_dataset(self, project_id: str, dataset_id: str) -> Dataset:
        row = await self.pool.fetchrow(
            """SELECT d.*, (SELECT count(*) FROM items i WHERE i.dataset_id = d.id) AS item_count
               FROM datasets d WHERE d.project_id = $1 AND d.id = $2""",
            project_id,
            dataset_id,
        )
        if row is None:
            raise NotFoundError(f"dataset {dataset_id} not found")
        return Dataset(**dict(row))

    async def dataset_project(self, dataset_id: str) -> str | None:
        """The project of a dataset, for commands that arrive without a key.

        Remembered: a dataset never changes project, and a command for a dataset deleted
        since still fails, at the insert (which checks the dataset in its statement).
        """
        project = self.dataset_projects.get(dataset_id)
        if project is not None:
            return project
        fetched: str | None = await self.pool.fetchval(
            "SELECT project_id FROM datasets WHERE id = $1", dataset_id
        )
        if fetched is not None:
            if len(self.dataset_projects) >= DATASET_CACHE_SIZE:
                self.dataset_projects.clear()
            self.dataset_projects[dataset_id] = fetched
        return fetched

    async def delete_dataset(self, project_id: str, dataset_id: str) -> list[ItemSnapshot]:
        """Delete a dataset and its items, announcing each item's deletion."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""DELETE FROM items WHERE dataset_id = $1 AND project_id = $2
                    RETURNING {ITEM_COLUMNS}""",
                dataset_id,
                project_id,
            )
            done = await conn.execute(
                "DELETE FROM datasets WHERE id = $1 AND project_id = $2", dataset_id, project_id
            )
            if done == "DELETE 0":
                raise NotFoundError(f"dataset {dataset_id} not found")
            items = [item_of(r) for r in rows]
            for item in items:
                await self._publish(conn, ItemDeleted(item=item), item.id)
        return items
