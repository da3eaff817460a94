"""The ``task_items`` table: items in labeling tasks, how they got there and their review."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from annotation_service import domain
from annotation_service.domain import NotFoundError
from annotation_service.repository.base import Store
from annotation_service.repository.items import image_of
from common.contracts import PredictionCompleted
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
                   model_id, model_version, execution_id)
               SELECT t, i, p, 'prediction', mn, mi, mv, e
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[]) AS u(t, i, p, mn, mi, mv, e)
               ON CONFLICT (task_id, item_id) DO UPDATE
                   SET model_name = excluded.model_name, model_id = excluded.model_id,
                       model_version = excluded.model_version,
                       execution_id = excluded.execution_id
                   WHERE task_items.model_version IS NULL
               RETURNING task_id, item_id, (xmax = 0) AS inserted""",
            [k[0] for k, _ in pairs],
            [k[1] for k, _ in pairs],
            [p.data.project_id for _, p in pairs],
            [p.data.model.name for _, p in pairs],
            [p.data.model.model_id for _, p in pairs],
            [p.data.model.version for _, p in pairs],
            [p.data.execution_id for _, p in pairs],
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
                   model_id, model_version, execution_id)
               SELECT $1, i, $2, $3, m.model_name, m.model_id, m.model_version,
                      m.execution_id
               FROM unnest($4::text[]) AS i
               LEFT JOIN LATERAL (
                   SELECT model_name, model_id, model_version, execution_id
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
                   (model_name, model_id, model_version, execution_id) = (
                       SELECT COALESCE(task_items.model_name, m.model_name),
                              COALESCE(task_items.model_id, m.model_id),
                              COALESCE(task_items.model_version, m.model_version),
                              COALESCE(task_items.execution_id, m.execution_id)
                       FROM (SELECT NULL) AS dummy LEFT JOIN LATERAL (
                           SELECT model_name, model_id, model_version, execution_id
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
