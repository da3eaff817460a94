"""The ``tasks`` table: labeling tasks, their auto-add rules, progress and acceptance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from annotation_service.domain import PENDING, ModelKey, NotFoundError, TaskRule
from annotation_service.repository.base import Executor, Store, record
from common.ids import new_id


class Tasks(Store):
    """Labeling tasks of every project."""

    async def create_task(
        self,
        project_id: str,
        name: str,
        dataset_id: str,
        pipeline_id: str | None,
        auto_add: bool,
        auto_add_from_services: list[str],
    ) -> dict[str, Any]:
        """A new labeling task on a dataset."""
        row = await self.pool.fetchrow(
            """INSERT INTO tasks (id, project_id, dataset_id, pipeline_id, name, auto_add,
                   auto_add_from_services)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
            new_id("task", hex_chars=24),
            project_id,
            dataset_id,
            pipeline_id,
            name,
            auto_add,
            auto_add_from_services,
        )
        assert row is not None
        return record(row)

    async def get_task(
        self, project_id: str, task_id: str, conn: Executor | None = None
    ) -> dict[str, Any]:
        """One task of the project."""
        row = await (conn or self.pool).fetchrow(
            "SELECT * FROM tasks WHERE id = $1 AND project_id = $2", task_id, project_id
        )
        if row is None:
            raise NotFoundError("task", task_id)
        return record(row)

    async def find_task(self, conn: asyncpg.Connection, task_id: str) -> dict[str, Any] | None:
        """A task by id, whichever project it is in (for a command to check its project)."""
        row = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return None if row is None else record(row)

    async def list_tasks(self, project_id: str) -> list[dict[str, Any]]:
        """The project's tasks, newest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM tasks WHERE project_id = $1 ORDER BY created_at DESC", project_id
        )
        return [record(r) for r in rows]

    async def auto_add_rules(
        self, conn: asyncpg.Connection, datasets: Sequence[tuple[str, str]]
    ) -> list[TaskRule]:
        """The rules of the tasks on these (project, dataset) pairs that add items by themselves."""
        rows = await conn.fetch(
            """SELECT id, project_id, dataset_id, auto_add, auto_add_from_services FROM tasks
               WHERE (project_id, dataset_id) IN
                     (SELECT * FROM unnest($1::text[], $2::text[]))
                 AND (auto_add OR cardinality(auto_add_from_services) > 0)""",
            [k[0] for k in datasets],
            [k[1] for k in datasets],
        )
        return [
            TaskRule(
                r["id"],
                r["project_id"],
                r["dataset_id"],
                r["auto_add"],
                tuple(r["auto_add_from_services"]),
            )
            for r in rows
        ]

    async def status_counts(self, task_id: str) -> dict[str, int]:
        """Items of a task per status."""
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n FROM task_items WHERE task_id = $1 GROUP BY status",
            task_id,
        )
        return {r["status"]: r["n"] for r in rows}

    async def review_counts(
        self, project_id: str, task_id: str | None, dataset_id: str | None
    ) -> tuple[list[tuple[ModelKey, str, int]], list[tuple[ModelKey, int]]]:
        """Reviewed items per (model version, status) over a task's (or the project's),
        and the auto-accepted ones per model version."""
        rows = await self.pool.fetch(
            """SELECT ti.model_name, ti.model_id, ti.model_version, ti.status, count(*) AS n,
                      count(*) FILTER (WHERE ti.auto_accepted) AS auto
               FROM task_items ti JOIN tasks t ON t.id = ti.task_id
               WHERE t.project_id = $1 AND ($2::text IS NULL OR t.id = $2)
                 AND ($3::text IS NULL OR t.dataset_id = $3)
                 AND ti.status <> $4
               GROUP BY 1, 2, 3, 4""",
            project_id,
            task_id,
            dataset_id,
            PENDING,
        )
        keys = [ModelKey(r["model_name"], r["model_id"], r["model_version"]) for r in rows]
        return (
            [(key, r["status"], r["n"]) for key, r in zip(keys, rows, strict=True)],
            [(key, r["auto"]) for key, r in zip(keys, rows, strict=True) if r["auto"]],
        )
