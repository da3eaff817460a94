"""The ``task_items`` table: items in labeling tasks, how they got there and their review."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from annotation_service import domain
from annotation_service.domain import NotFoundError
from annotation_service.repository.base import Store
from annotation_service.repository.items import image_of
from common.contracts import AddTaskItem, PredictionCompleted
from common.envelope import CloudEvent


class TaskItems(Store):
    """Items of labeling tasks."""

    async def add_predicted(
        self,
        conn: asyncpg.Connection,
        wanted: dict[tuple[str, str], CloudEvent[PredictionCompleted]],
    ) -> list[tuple[str, CloudEvent[PredictionCompleted]]]:
        """Put items into tasks for their predictions (one per (task, item)); return
        (task, prediction) for each item that entered a task now.

        An item already in the task is credited to the prediction's model version if it
        had none.
        """
        pairs = sorted(wanted.items(), key=lambda pair: pair[0])
        rows = await conn.fetch(
            """INSERT INTO task_items (task_id, item_id, project_id, added_by, model_name,
                   model_id, model_version, execution_id, service_id)
               SELECT t, i, p, 'prediction', mn, mi, mv, e, s
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::text[]) AS u(t, i, p, mn, mi, mv, e, s)
               ON CONFLICT (task_id, item_id) DO UPDATE
                   SET model_name = excluded.model_name, model_id = excluded.model_id,
                       model_version = excluded.model_version,
                       execution_id = excluded.execution_id, service_id = excluded.service_id
                   WHERE task_items.model_version IS NULL
               RETURNING task_id, item_id, (xmax = 0) AS inserted""",
            [k[0] for k, _ in pairs],
            [k[1] for k, _ in pairs],
            [p.data.project_id for _, p in pairs],
            [p.data.model.name for _, p in pairs],
            [p.data.model.model_id for _, p in pairs],
            [p.data.model.version for _, p in pairs],
            [p.data.execution_id for _, p in pairs],
            [p.data.service_id for _, p in pairs],
        )
        return [(r["task_id"], wanted[(r["task_id"], r["item_id"])]) for r in rows if r["inserted"]]

    async def add_by_hand(
        self,
        conn: asyncpg.Connection,
        project_id: str,
        task_id: str,
        item_ids: list[str],
        added_by: str,
    ) -> list[str]:
        """Add items to a task; return the ones that were not in it yet. Each is credited
        to its latest model annotation's model version."""
        rows = await conn.fetch(
            """INSERT INTO task_items (task_id, item_id, project_id, added_by, model_name,
                   model_id, model_version, execution_id, service_id)
               SELECT $1, i, $2, $3, m.model_name, m.model_id, m.model_version,
                      m.execution_id, m.service_id
               FROM unnest($4::text[]) AS i
               LEFT JOIN LATERAL (
                   SELECT model_name, model_id, model_version, execution_id, service_id
                   FROM annotations a
                   WHERE a.item_id = i AND a.project_id = $2 AND a.source = 'model'
                   ORDER BY a.created_at DESC LIMIT 1) m ON true
               ON CONFLICT (task_id, item_id) DO NOTHING
               RETURNING item_id""",
            task_id,
            project_id,
            added_by,
            list(dict.fromkeys(item_ids)),
        )
        return [r["item_id"] for r in rows]

    async def pipeline_item(
        self, conn: asyncpg.Connection, pipeline_execution_id: str, node_id: str
    ) -> asyncpg.Record | None:
        """The task item a pipeline execution's task node added, if it did."""
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT * FROM task_items WHERE pipeline_execution_id = $1 AND node_id = $2",
            pipeline_execution_id,
            node_id,
        )
        return row

    async def add_from_pipeline(
        self, conn: asyncpg.Connection, command: AddTaskItem, reviewer: str
    ) -> tuple[asyncpg.Record, bool]:
        """Put the command's item into its task (approved by ``reviewer`` when
        ``auto_accept``); return the row and whether it was inserted now.

        An item already in the task stays as it is (credited to the command's model if it
        had none, and tagged with the pipeline execution if it had none).
        """
        model = command.model
        row = await conn.fetchrow(
            """INSERT INTO task_items (task_id, item_id, project_id, added_by, model_name,
                   model_id, model_version, execution_id, service_id, status, auto_accepted,
                   reviewer, reviewed_at, pipeline_id, pipeline_execution_id, node_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                   $15, $10,
                   CASE WHEN $10 THEN $11 END, CASE WHEN $10 THEN now() END,
                   $12, $13, $14)
               ON CONFLICT (task_id, item_id) DO UPDATE SET
                   (model_name, model_id, model_version, execution_id, service_id) = (
                       SELECT COALESCE(task_items.model_name, excluded.model_name),
                              COALESCE(task_items.model_id, excluded.model_id),
                              COALESCE(task_items.model_version, excluded.model_version),
                              COALESCE(task_items.execution_id, excluded.execution_id),
                              COALESCE(task_items.service_id, excluded.service_id)),
                   (pipeline_id, pipeline_execution_id, node_id) = (
                       SELECT COALESCE(task_items.pipeline_id, excluded.pipeline_id),
                              COALESCE(task_items.pipeline_execution_id,
                                       excluded.pipeline_execution_id),
                              COALESCE(task_items.node_id, excluded.node_id))
               RETURNING *, (xmax = 0) AS inserted""",
            command.task_id,
            command.item_id,
            command.project_id,
            reviewer,
            model.name if model else None,
            model.model_id if model else None,
            model.version if model else None,
            command.execution_id,
            command.service_id,
            command.auto_accept,
            reviewer,
            command.pipeline_id,
            command.pipeline_execution_id,
            command.node_id,
            domain.entry_status(command.auto_accept),
        )
        assert row is not None
        return row, bool(row["inserted"])

    async def page(
        self, task_id: str, status: str | None, limit: int, offset: int
    ) -> tuple[int, list[asyncpg.Record]]:
        """A page of a task's items (one status or all) with the item facts, and the total."""
        total: int = await self.pool.fetchval(
            "SELECT count(*) FROM task_items WHERE task_id = $1 AND ($2::text IS NULL OR status = $2)",
            task_id,
            status,
        )
        rows = await self.pool.fetch(
            """SELECT ti.*, i.filename, i.width, i.height FROM task_items ti
               LEFT JOIN items i ON i.id = ti.item_id
               WHERE ti.task_id = $1 AND ($2::text IS NULL OR ti.status = $2)
               ORDER BY ti.added_at, ti.item_id LIMIT $3 OFFSET $4""",
            task_id,
            status,
            limit,
            offset,
        )
        return total, list(rows)

    async def lock_task_item(
        self, conn: asyncpg.Connection, task_id: str, item_id: str
    ) -> asyncpg.Record:
        """A task item, locked for its review."""
        current = await conn.fetchrow(
            "SELECT * FROM task_items WHERE task_id = $1 AND item_id = $2 FOR UPDATE",
            task_id,
            item_id,
        )
        if current is None:
            raise NotFoundError("task item", item_id)
        return current

    async def record_review(
        self,
        conn: asyncpg.Connection,
        project_id: str,
        task_id: str,
        item_id: str,
        status: str,
        reviewer: str,
    ) -> asyncpg.Record:
        """Store a review's outcome; an item without a model version is credited to its
        latest model annotation's."""
        row = await conn.fetchrow(
            """UPDATE task_items SET status = $3, reviewer = $4, reviewed_at = now(),
                   (model_name, model_id, model_version, execution_id, service_id) = (
                       SELECT COALESCE(task_items.model_name, m.model_name),
                              COALESCE(task_items.model_id, m.model_id),
                              COALESCE(task_items.model_version, m.model_version),
                              COALESCE(task_items.execution_id, m.execution_id),
                              COALESCE(task_items.service_id, m.service_id)
                       FROM (SELECT NULL) AS dummy LEFT JOIN LATERAL (
                           SELECT model_name, model_id, model_version, execution_id,
                                  service_id
                           FROM annotations a WHERE a.item_id = $2
                             AND a.project_id = $5 AND a.source = 'model'
                           ORDER BY a.created_at DESC LIMIT 1) m ON true)
               WHERE task_id = $1 AND item_id = $2 RETURNING *""",
            task_id,
            item_id,
            status,
            reviewer,
            project_id,
        )
        assert row is not None
        return row

    async def task_images(self, task_id: str, statuses: Sequence[str]) -> list[domain.ImageInfo]:
        """The images of a task's items in these statuses (all when empty), not deleted."""
        rows = await self.pool.fetch(
            """SELECT ti.item_id AS id, i.filename, i.width, i.height
               FROM task_items ti LEFT JOIN items i ON i.id = ti.item_id
               WHERE ti.task_id = $1 AND (cardinality($2::text[]) = 0
                                          OR ti.status = ANY($2::text[]))
                 AND NOT COALESCE(i.deleted, false)
               ORDER BY ti.added_at, ti.item_id""",
            task_id,
            list(statuses),
        )
        return [image_of(r) for r in rows]
