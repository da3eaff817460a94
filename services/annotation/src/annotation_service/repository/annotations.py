"""The ``annotations`` table: model rows from predictions, human rows, edits and soft
deletions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from annotation_service.domain import NewAnnotation, NotFoundError
from annotation_service.repository.base import (
    ANNOTATION_COLUMNS,
    Executor,
    Store,
    annotation_view,
)


def _encode_json(value: Any) -> str:
    """Compact JSON text (orjson: several times faster than the json module on the hot path)."""
    return orjson.dumps(value).decode()


class Annotations(Store):
    """Annotations of every project (every query scoped by project)."""

    async def insert_model_annotations(
        self, conn: asyncpg.Connection, predictions: Sequence[Sequence[NewAnnotation]]
    ) -> set[str]:
        """Insert each prediction's rows (one non-empty list per execution, the first
        of an execution wins); return the executions whose rows were new.

        What a prediction shares (project, item, execution, model) travels once per
        prediction and what differs once per row, and all coordinates as one JSON array:
        encoding the parameters is most of this statement's cost on the client. Rows go
        in id order, so concurrent writers take their locks in one order and cannot
        deadlock on a redelivered duplicate.
        """
        firsts: dict[str, Sequence[NewAnnotation]] = {}
        for rows in predictions:
            if rows and rows[0].execution_id is not None:
                firsts.setdefault(rows[0].execution_id, rows)
        if not firsts:
            return set()
        shared = [rows[0] for rows in firsts.values()]
        numbered = [
            (number, row) for number, rows in enumerate(firsts.values(), start=1) for row in rows
        ]
        inserted = await conn.fetch(
            """WITH p AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                       $10::text[], $11::text[], $12::text[], $21::int[]) WITH ORDINALITY
                       AS p(project_id, dataset_id, item_id, execution_id, service_id,
                            model_name, model_id, model_version, origin_way, origin_id,
                            origin_pipeline_execution_id, origin_node_id, attempt, number)),
               a AS (
                   SELECT * FROM unnest($13::text[], $14::int[], $15::text[], $16::text[],
                       $17::float8[], $18::text[], $19::int[]) WITH ORDINALITY
                       AS a(id, number, type, label, confidence, text, idx, n)),
               ins AS (
                   INSERT INTO annotations (id, project_id, dataset_id, item_id, type, label,
                       coordinates, confidence, text, source, execution_id, idx, service_id,
                       model_name, model_id, model_version, origin_way, origin_id,
                       origin_pipeline_execution_id, origin_node_id, attempt)
                   SELECT a.id, p.project_id, p.dataset_id, p.item_id, a.type, a.label,
                       c.coordinates, a.confidence, a.text, 'model',
                       p.execution_id, a.idx, p.service_id, p.model_name, p.model_id,
                       p.model_version, p.origin_way, p.origin_id,
                       p.origin_pipeline_execution_id, p.origin_node_id, p.attempt
                   FROM a JOIN p USING (number)
                   JOIN jsonb_array_elements($20::text::jsonb) WITH ORDINALITY
                       AS c(coordinates, n) USING (n)
                   ORDER BY a.id
                   -- Rows a pipeline's command stored first lack the predict node its
                   -- prediction names: that is filled in; nothing else changes.
                   ON CONFLICT (execution_id, idx) WHERE execution_id IS NOT NULL DO UPDATE
                       SET origin_way = excluded.origin_way, origin_id = excluded.origin_id,
                           origin_pipeline_execution_id = excluded.origin_pipeline_execution_id,
                           origin_node_id = excluded.origin_node_id
                       WHERE annotations.origin_node_id IS NULL
                         AND excluded.origin_node_id IS NOT NULL
                   RETURNING execution_id, (xmax = 0) AS inserted)
               SELECT DISTINCT execution_id FROM ins WHERE inserted""",
            [p.project_id for p in shared],
            [p.dataset_id for p in shared],
            [p.item_id for p in shared],
            [p.execution_id for p in shared],
            [p.service_id for p in shared],
            [p.model_name for p in shared],
            [p.model_id for p in shared],
            [p.model_version for p in shared],
            [p.origin.way if p.origin else None for p in shared],
            [p.origin.id if p.origin else None for p in shared],
            [p.origin.pipeline_execution_id if p.origin else None for p in shared],
            [p.origin.node_id if p.origin else None for p in shared],
            [r.id for _, r in numbered],
            [number for number, _ in numbered],
            [r.type for _, r in numbered],
            [r.label for _, r in numbered],
            [r.confidence for _, r in numbered],
            [r.text for _, r in numbered],
            [r.index for _, r in numbered],
            # Row n takes element n; serialised here in one call (text, not the pool's
            # jsonb codec, which would encode it again).
            _encode_json([r.coordinates for _, r in numbered]),
            [p.attempt for p in shared],
        )
        return {r["execution_id"] for r in inserted}

    async def list_annotations(
        self,
        project_id: str,
        *,
        item_id: str | None = None,
        dataset_id: str | None = None,
        include_deleted: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Annotations of the project, optionally of one item or dataset."""
        rows = await self.pool.fetch(
            f"""SELECT {ANNOTATION_COLUMNS} FROM annotations
                WHERE project_id = $1 AND ($2::text IS NULL OR item_id = $2)
                  AND ($3::text IS NULL OR dataset_id = $3)
                  AND ($4 OR deleted_at IS NULL)
                ORDER BY created_at, id LIMIT $5 OFFSET $6""",
            project_id,
            item_id,
            dataset_id,
            include_deleted,
            limit,
            offset,
        )
        return [annotation_view(r) for r in rows]

    async def get_annotation(self, project_id: str, annotation_id: str) -> dict[str, Any]:
        """One annotation of the project (deleted ones too, flagged)."""
        row = await self.pool.fetchrow(
            f"SELECT {ANNOTATION_COLUMNS} FROM annotations WHERE id = $1 AND project_id = $2",
            annotation_id,
            project_id,
        )
        if row is None:
            raise NotFoundError("annotation", annotation_id)
        return annotation_view(row)

    async def current_annotations(
        self, project_id: str, item_ids: list[str], dataset_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The items' annotations that are not deleted, in item and creation order."""
        rows = await self.pool.fetch(
            f"""SELECT {ANNOTATION_COLUMNS} FROM annotations
                WHERE project_id = $1 AND ($2::text IS NULL OR dataset_id = $2)
                  AND item_id = ANY($3::text[]) AND deleted_at IS NULL
                ORDER BY item_id, created_at, idx NULLS LAST, id""",
            project_id,
            dataset_id,
            item_ids,
        )
        return [annotation_view(r) for r in rows]

    async def insert_human_annotation(
        self, conn: asyncpg.Connection, ann: NewAnnotation, author: str
    ) -> dict[str, Any]:
        """Store an annotation a person made (its geometry already normalised)."""
        row = await conn.fetchrow(
            f"""INSERT INTO annotations (id, project_id, dataset_id, item_id, type, label,
                    coordinates, text, source, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, 'human', $9)
                RETURNING {ANNOTATION_COLUMNS}""",
            ann.id,
            ann.project_id,
            ann.dataset_id,
            ann.item_id,
            ann.type,
            ann.label,
            ann.coordinates,
            ann.text,
            author,
        )
        assert row is not None
        return annotation_view(row)

    async def lock_annotation(
        self, conn: asyncpg.Connection, project_id: str, annotation_id: str
    ) -> asyncpg.Record:
        """The annotation's type, coordinates and deletion, locked for an edit."""
        current = await conn.fetchrow(
            """SELECT type, coordinates, deleted_at FROM annotations
               WHERE id = $1 AND project_id = $2 FOR UPDATE""",
            annotation_id,
            project_id,
        )
        if current is None:
            raise NotFoundError("annotation", annotation_id)
        return current

    async def update_annotation(
        self,
        conn: asyncpg.Connection,
        project_id: str,
        annotation_id: str,
        kind: str,
        geometry: Any,
        changes: dict[str, Any],
        editor: str,
    ) -> dict[str, Any]:
        """Apply an edit; a model annotation's original is copied aside on its first."""
        row = await conn.fetchrow(
            f"""UPDATE annotations SET type = $3, coordinates = $4::jsonb,
                    label = COALESCE($5, label),
                    text = CASE WHEN $6 THEN $7 ELSE text END,
                    original = CASE WHEN source = 'model' AND original IS NULL
                        THEN jsonb_build_object('type', type, 'label', label,
                            'coordinates', coordinates, 'confidence', confidence, 'text', text)
                        ELSE original END,
                    modified_at = now(), modified_by = $8
                WHERE id = $1 AND project_id = $2 RETURNING {ANNOTATION_COLUMNS}""",
            annotation_id,
            project_id,
            kind,
            geometry,
            changes.get("label"),
            "text" in changes,
            changes.get("text"),
            editor,
        )
        assert row is not None
        return annotation_view(row)

    async def soft_delete(
        self, executor: Executor, project_id: str, annotation_id: str, editor: str
    ) -> None:
        """Soft-delete: the row (and the model's original) stays for comparison."""
        found = await executor.fetchval(
            """UPDATE annotations SET deleted_at = COALESCE(deleted_at, now()),
                   deleted_by = COALESCE(deleted_by, $3)
               WHERE id = $1 AND project_id = $2 RETURNING 1""",
            annotation_id,
            project_id,
            editor,
        )
        if found is None:
            raise NotFoundError("annotation", annotation_id)

    async def annotation_item(
        self, conn: asyncpg.Connection, project_id: str, annotation_id: str
    ) -> str | None:
        """The item an annotation of the project is on."""
        item: str | None = await conn.fetchval(
            "SELECT item_id FROM annotations WHERE id = $1 AND project_id = $2",
            annotation_id,
            project_id,
        )
        return item

    async def model_annotations_changed(
        self, conn: asyncpg.Connection, project_id: str, item_id: str, execution_id: str
    ) -> bool:
        """Whether any of the execution's annotations of the item was edited or deleted."""
        changed: bool = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM annotations WHERE item_id = $1
                   AND project_id = $2 AND execution_id = $3
                   AND (modified_at IS NOT NULL OR deleted_at IS NOT NULL))""",
            item_id,
            project_id,
            execution_id,
        )
        return bool(changed)

    async def changed_since(
        self, conn: asyncpg.Connection, project_id: str, item_id: str, since: datetime
    ) -> bool:
        """Whether people added, edited or deleted annotations of the item since ``since``."""
        changed: bool = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM annotations WHERE item_id = $1
                   AND project_id = $2 AND (
                       (source = 'human' AND created_at >= $3) OR modified_at >= $3
                       OR deleted_at >= $3))""",
            item_id,
            project_id,
            since,
        )
        return bool(changed)
