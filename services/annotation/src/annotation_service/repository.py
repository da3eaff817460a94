"""Persistence of the annotation service; every event goes through the outbox in the
transaction of the change it announces."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from annotation_service import domain
from annotation_service.domain import (
    AnnotationError,
    ModelKey,
    NewAnnotation,
    NotFoundError,
    TaskRule,
)
from common.contracts import (
    AnnotationsCreated,
    CreatedAnnotation,
    ItemSnapshot,
    PredictionCompleted,
    TaskItemAdded,
    TaskItemReviewed,
)
from common.envelope import CloudEvent, make_event
from common.messaging import OutboxEvent, enqueue_many
from common.topology import ANNOTATION, Topology

SOURCE = "/services/annotation"

ANNOTATION_COLUMNS = """id, project_id, dataset_id, item_id, type, label, coordinates, confidence,
    text, source, execution_id, idx, service_id, model_name, model_id, model_version, original,
    created_at, created_by, modified_at, modified_by, deleted_at, deleted_by"""


@dataclass(frozen=True, slots=True)
class SerializedEvent:
    """An envelope already serialised (the outbox takes it as is)."""

    id: str
    routing_key: str
    body: bytes

    def to_json_bytes(self) -> bytes:
        """The envelope's bytes."""
        return self.body


def _encode_json(value: Any) -> str:
    """Compact JSON text (orjson: several times faster than the json module on the hot path)."""
    return orjson.dumps(value).decode()


_CREATED_TYPE = "prelabel." + AnnotationsCreated.routing_key


def created_event(
    rows: Sequence[NewAnnotation], correlation: str | None, at: datetime
) -> SerializedEvent:
    """The ``annotation.created.v2`` envelope of one prediction's stored annotations,
    serialised directly.

    Ingestion emits one per prediction at thousands a second; the fields come from an
    already validated prediction, and a unit test checks that these bytes parse into
    the same ``CloudEvent[AnnotationsCreated]`` that ``make_event`` builds.
    """
    first = rows[0]
    key = first.execution_id or first.id
    event_id = domain.created_event_id(key)
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": _CREATED_TYPE,
            "time": at.isoformat(),
            "subject": first.item_id,
            "datacontenttype": "application/json",
            "correlationid": correlation,
            "data": {
                "project_id": first.project_id,
                "dataset_id": first.dataset_id,
                "item_id": first.item_id,
                "source": first.source,
                "execution_id": first.execution_id,
                "annotations": [
                    {"annotation_id": row.id, "type": row.type, "label": row.label} for row in rows
                ],
            },
        }
    )
    return SerializedEvent(event_id, AnnotationsCreated.routing_key, body)


@dataclass(frozen=True)
class IngestResult:
    """What one prediction stored."""

    stored: int
    """Annotations written by this delivery (0 for a redelivery)."""
    added_to_tasks: int
    """Task items created by this delivery."""


def _record(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


def annotation_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """An annotation as the API shows it (prelabel's own shape, also used by JSON lines)."""
    model = (
        {"name": row["model_name"], "model_id": row["model_id"], "version": row["model_version"]}
        if row["model_name"] is not None
        else None
    )
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "dataset_id": row["dataset_id"],
        "item_id": row["item_id"],
        "type": row["type"],
        "label": row["label"],
        "coordinates": row["coordinates"],
        "confidence": row["confidence"],
        "text": row["text"],
        "source": row["source"],
        "model": model,
        "execution_id": row["execution_id"],
        "service_id": row["service_id"],
        "original": _original(row),
        "modified": row["modified_at"] is not None,
        "deleted": row["deleted_at"] is not None,
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "modified_at": row["modified_at"],
        "modified_by": row["modified_by"],
        "deleted_at": row["deleted_at"],
        "deleted_by": row["deleted_by"],
    }


def _event_id(event: OutboxEvent) -> str:
    return event.id


def _original(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any] | None:
    # A model annotation's original is copied aside on its first edit; until then the
    # row itself is what the model said.
    if row["original"] is not None or row["source"] != "model":
        original: dict[str, Any] | None = row["original"]
        return original
    return {
        "type": row["type"],
        "label": row["label"],
        "coordinates": row["coordinates"],
        "confidence": row["confidence"],
        "text": row["text"],
    }


class Repository:
    """Tables of the annotation schema plus the outbox."""

    def __init__(self, pool: asyncpg.Pool, topology: Topology) -> None:
        self.pool = pool
        self._exchange = topology.events_exchange(ANNOTATION)

    # ------------------------------------------------------------------ events

    def _created_event(self, ann: NewAnnotation, correlation: str | None) -> CloudEvent[Any]:
        return make_event(
            AnnotationsCreated(
                project_id=ann.project_id,
                dataset_id=ann.dataset_id,
                item_id=ann.item_id,
                source=ann.source,
                execution_id=ann.execution_id,
                annotations=[
                    CreatedAnnotation(annotation_id=ann.id, type=ann.type, label=ann.label)
                ],
            ),
            source=SOURCE,
            subject=ann.item_id,
            correlationid=correlation,
            event_id=domain.created_event_id(ann.execution_id or ann.id),
        )

    def _added_event(
        self, task_id: str, project_id: str, item_id: str, correlation: str | None
    ) -> CloudEvent[Any]:
        return make_event(
            TaskItemAdded(task_id=task_id, project_id=project_id, item_id=item_id),
            source=SOURCE,
            subject=item_id,
            correlationid=correlation,
            event_id=domain.task_item_added_event_id(task_id, item_id),
        )

    # ------------------------------------------------------------------ predictions

    async def ingest(
        self, batch: Sequence[tuple[CloudEvent[PredictionCompleted], list[NewAnnotation]]]
    ) -> list[IngestResult]:
        """Store several predictions (each with the rows
        :func:`domain.annotations_from_prediction` made of it) in one transaction.

        Idempotent on (execution id, index): rows already there are skipped, and so
        are their events. Items join the tasks whose rules accept the prediction.
        """
        predictions = [event for event, _ in batch]
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await self._insert_model_annotations(conn, batch)
            # A prediction's rows commit together, so an execution either stored all its
            # rows now or none (a redelivery). Rows are credited to the first delivery in
            # the batch that carries them: a duplicate inside one batch stores nothing,
            # like a later redelivery.
            stored_per_event: list[list[NewAnnotation]] = []
            for event, rows in batch:
                execution = event.data.execution_id
                if rows and execution in inserted:
                    inserted.discard(execution)
                    stored_per_event.append(rows)
                else:
                    stored_per_event.append([])
            now = datetime.now(UTC)
            events: list[OutboxEvent] = [
                created_event(rows, p.correlationid, now)
                for p, rows in zip(predictions, stored_per_event, strict=True)
                if rows
            ]
            added = await self._auto_add(conn, predictions)
            events.extend(
                self._added_event(task_id, p.data.project_id, p.data.item_id, p.correlationid)
                for task_id, p in added
            )
            events.sort(key=_event_id)
            await enqueue_many(conn, events, self._exchange)
        added_per_event: dict[int, int] = {}
        for _, p in added:
            added_per_event[id(p)] = added_per_event.get(id(p), 0) + 1
        return [
            IngestResult(stored=len(rows), added_to_tasks=added_per_event.get(id(p), 0))
            for p, rows in zip(predictions, stored_per_event, strict=True)
        ]

    async def _insert_model_annotations(
        self,
        conn: asyncpg.Connection,
        batch: Sequence[tuple[CloudEvent[PredictionCompleted], list[NewAnnotation]]],
    ) -> set[str]:
        """Insert the rows of ``batch``; return the executions whose rows were new.

        What a prediction shares (project, item, execution, model) travels once per
        prediction and what differs once per row, and all coordinates as one JSON array:
        encoding the parameters is most of this statement's cost on the client. Rows go
        in id order, so concurrent writers take their locks in one order and cannot
        deadlock on a redelivered duplicate.
        """
        firsts: dict[str, tuple[PredictionCompleted, list[NewAnnotation]]] = {}
        for event, rows in batch:
            if rows:
                firsts.setdefault(event.data.execution_id, (event.data, rows))
        if not firsts:
            return set()
        predictions = list(firsts.values())
        numbered = [
            (number, row)
            for number, (_, shared) in enumerate(predictions, start=1)
            for row in shared
        ]
        inserted = await conn.fetch(
            """WITH p AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY
                       AS p(project_id, dataset_id, item_id, execution_id, service_id,
                            model_name, model_id, model_version, number)),
               a AS (
                   SELECT * FROM unnest($9::text[], $10::int[], $11::text[], $12::text[],
                       $13::float8[], $14::text[], $15::int[]) WITH ORDINALITY
                       AS a(id, number, type, label, confidence, text, idx, n)),
               ins AS (
                   INSERT INTO annotations (id, project_id, dataset_id, item_id, type, label,
                       coordinates, confidence, text, source, execution_id, idx, service_id,
                       model_name, model_id, model_version)
                   SELECT a.id, p.project_id, p.dataset_id, p.item_id, a.type, a.label,
                       c.coordinates, a.confidence, a.text, 'model',
                       p.execution_id, a.idx, p.service_id, p.model_name, p.model_id,
                       p.model_version
                   FROM a JOIN p USING (number)
                   JOIN jsonb_array_elements($16::text::jsonb) WITH ORDINALITY
                       AS c(coordinates, n) USING (n)
                   ORDER BY a.id
                   ON CONFLICT (execution_id, idx) WHERE execution_id IS NOT NULL DO NOTHING
                   RETURNING execution_id)
               SELECT DISTINCT execution_id FROM ins""",
            [p.project_id for p, _ in predictions],
            [p.dataset_id for p, _ in predictions],
            [p.item_id for p, _ in predictions],
            [p.execution_id for p, _ in predictions],
            [p.service_id for p, _ in predictions],
            [p.model.name for p, _ in predictions],
            [p.model.model_id for p, _ in predictions],
            [p.model.version for p, _ in predictions],
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
        )
        return {r["execution_id"] for r in inserted}

    async def _auto_add(
        self, conn: asyncpg.Connection, predictions: Sequence[CloudEvent[PredictionCompleted]]
    ) -> list[tuple[str, CloudEvent[PredictionCompleted]]]:
        """Add predicted items to the tasks that ask for them; return (task, prediction)
        for each item that entered a task now."""
        keys = {(p.data.project_id, p.data.dataset_id) for p in predictions}
        task_rows = await conn.fetch(
            """SELECT id, project_id, dataset_id, auto_add, auto_add_from_services FROM tasks
               WHERE (project_id, dataset_id) IN
                     (SELECT * FROM unnest($1::text[], $2::text[]))
                 AND (auto_add OR cardinality(auto_add_from_services) > 0)""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        if not task_rows:
            return []
        rules = [
            TaskRule(
                r["id"],
                r["project_id"],
                r["dataset_id"],
                r["auto_add"],
                tuple(r["auto_add_from_services"]),
            )
            for r in task_rows
        ]
        # One row per (task, item): a statement may not touch the same row twice.
        wanted: dict[tuple[str, str], CloudEvent[PredictionCompleted]] = {}
        for p in predictions:
            for rule in rules:
                if rule.accepts(p.data):
                    wanted.setdefault((rule.task_id, p.data.item_id), p)
        if not wanted:
            return []
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

    # ------------------------------------------------------------------ items

    async def upsert_item(self, item: ItemSnapshot, *, deleted: bool = False) -> None:
        """Record what an item event says, unless a newer snapshot is already stored.

        A deletion is final (item ids are never reused), whatever order events come in.
        """
        system = item.metadata.get("system", {}) if isinstance(item.metadata, dict) else {}

        def _int(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        await self.pool.execute(
            """INSERT INTO items (id, project_id, dataset_id, filename, width, height, mimetype,
                   version_at, deleted)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (id) DO UPDATE SET
                   filename = CASE WHEN excluded.version_at >= items.version_at
                                   THEN excluded.filename ELSE items.filename END,
                   width = CASE WHEN excluded.version_at >= items.version_at
                                THEN excluded.width ELSE items.width END,
                   height = CASE WHEN excluded.version_at >= items.version_at
                                 THEN excluded.height ELSE items.height END,
                   mimetype = CASE WHEN excluded.version_at >= items.version_at
                                   THEN excluded.mimetype ELSE items.mimetype END,
                   version_at = GREATEST(items.version_at, excluded.version_at),
                   deleted = items.deleted OR excluded.deleted""",
            item.id,
            item.project_id,
            item.dataset_id,
            item.filename,
            _int(system.get("width")),
            _int(system.get("height")),
            system.get("mimetype") if isinstance(system.get("mimetype"), str) else None,
            item.updated_at,
            deleted,
        )

    async def item_dataset(self, conn: asyncpg.Connection, project_id: str, item_id: str) -> str:
        """The dataset of an item this service knows (from item events or annotations)."""
        dataset: str | None = await conn.fetchval(
            """SELECT dataset_id FROM items WHERE id = $1 AND project_id = $2 AND NOT deleted
               UNION ALL
               SELECT dataset_id FROM annotations WHERE item_id = $1 AND project_id = $2
               LIMIT 1""",
            item_id,
            project_id,
        )
        if dataset is None:
            raise NotFoundError("item", item_id)
        return dataset

    # ------------------------------------------------------------------ annotations

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

    async def create_human_annotation(
        self,
        project_id: str,
        item_id: str,
        kind: str,
        label: str,
        coordinates: Any,
        text: str | None,
        author: str,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> dict[str, Any]:
        """Store an annotation made by a person and announce it."""
        geometry = domain.normalize_geometry(kind, coordinates)
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self.create_human_annotation(
                    project_id, item_id, kind, label, geometry, text, author, conn=own
                )
        dataset_id = await self.item_dataset(conn, project_id, item_id)
        ann = NewAnnotation(
            id=f"ann_{uuid.uuid4().hex[:24]}",
            project_id=project_id,
            dataset_id=dataset_id,
            item_id=item_id,
            type=kind,
            label=label,
            coordinates=geometry,
            confidence=None,
            text=text,
            source="human",
            execution_id=None,
            index=None,
            service_id=None,
            model_name=None,
            model_id=None,
            model_version=None,
        )
        row = await conn.fetchrow(
            f"""INSERT INTO annotations (id, project_id, dataset_id, item_id, type, label,
                    coordinates, text, source, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, 'human', $9)
                RETURNING {ANNOTATION_COLUMNS}""",
            ann.id,
            project_id,
            dataset_id,
            item_id,
            kind,
            label,
            geometry,
            text,
            author,
        )
        await enqueue_many(conn, [self._created_event(ann, None)], self._exchange)
        assert row is not None
        return annotation_view(row)

    async def edit_annotation(
        self,
        project_id: str,
        annotation_id: str,
        changes: dict[str, Any],
        editor: str,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> dict[str, Any]:
        """Change label, type, coordinates or text; the model's original stays as it was."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self.edit_annotation(
                    project_id, annotation_id, changes, editor, conn=own
                )
        current = await conn.fetchrow(
            """SELECT type, coordinates, deleted_at FROM annotations
               WHERE id = $1 AND project_id = $2 FOR UPDATE""",
            annotation_id,
            project_id,
        )
        if current is None:
            raise NotFoundError("annotation", annotation_id)
        if current["deleted_at"] is not None:
            raise AnnotationError(f"annotation {annotation_id!r} is deleted", 409)
        kind = changes.get("type", current["type"])
        coordinates = changes.get("coordinates", current["coordinates"])
        geometry = domain.normalize_geometry(kind, coordinates)
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

    async def delete_annotation(
        self,
        project_id: str,
        annotation_id: str,
        editor: str,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        """Soft-delete: the row (and the model's original) stays for comparison."""
        executor = conn or self.pool
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

    # ------------------------------------------------------------------ tasks

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
            f"task_{uuid.uuid4().hex[:24]}",
            project_id,
            dataset_id,
            pipeline_id,
            name,
            auto_add,
            auto_add_from_services,
        )
        assert row is not None
        return _record(row)

    async def get_task(
        self, project_id: str, task_id: str, conn: asyncpg.Connection | None = None
    ) -> dict[str, Any]:
        """One task of the project."""
        row = await (conn or self.pool).fetchrow(
            "SELECT * FROM tasks WHERE id = $1 AND project_id = $2", task_id, project_id
        )
        if row is None:
            raise NotFoundError("task", task_id)
        return _record(row)

    async def list_tasks(self, project_id: str) -> list[dict[str, Any]]:
        """The project's tasks, newest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM tasks WHERE project_id = $1 ORDER BY created_at DESC", project_id
        )
        return [_record(r) for r in rows]

    async def add_items(
        self, project_id: str, task_id: str, item_ids: list[str], added_by: str
    ) -> list[str]:
        """Add items to a task by hand; return the ones that were not in it yet.

        The model version an item is credited to is its latest model annotation's.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            task = await self.get_task(project_id, task_id, conn)
            known = await conn.fetch(
                """SELECT id FROM items
                   WHERE id = ANY($1::text[]) AND project_id = $2 AND dataset_id = $3
                     AND NOT deleted
                   UNION
                   SELECT item_id FROM annotations
                   WHERE item_id = ANY($1::text[]) AND project_id = $2 AND dataset_id = $3""",
                item_ids,
                project_id,
                task["dataset_id"],
            )
            missing = sorted(set(item_ids) - {r["id"] for r in known})
            if missing:
                raise AnnotationError(
                    f"items not in dataset {task['dataset_id']!r}: {', '.join(missing[:20])}",
                    404,
                )
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
            added = [r["item_id"] for r in rows]
            await enqueue_many(
                conn,
                [self._added_event(task_id, project_id, item, None) for item in added],
                self._exchange,
            )
        return added

    async def list_task_items(
        self, project_id: str, task_id: str, status: str | None, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """Items of a task (one status or all) with their current annotations."""
        await self.get_task(project_id, task_id)
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
        annotations = await self.pool.fetch(
            f"""SELECT {ANNOTATION_COLUMNS} FROM annotations
                WHERE project_id = $1 AND item_id = ANY($2::text[]) AND deleted_at IS NULL
                ORDER BY created_at, idx NULLS LAST, id""",
            project_id,
            [r["item_id"] for r in rows],
        )
        by_item: dict[str, list[dict[str, Any]]] = {}
        for ann in annotations:
            by_item.setdefault(ann["item_id"], []).append(annotation_view(ann))
        items = []
        for r in rows:
            item = _task_item_view(r)
            item["annotations"] = by_item.get(r["item_id"], [])
            items.append(item)
        return total, items

    async def review(
        self,
        project_id: str,
        task_id: str,
        item_id: str,
        action: domain.ReviewAction,
        reviewer: str,
        corrections: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Decide on a pending task item, applying corrections as annotation edits in the
        same transaction, and announce the outcome."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self.get_task(project_id, task_id, conn)
            current = await conn.fetchrow(
                "SELECT * FROM task_items WHERE task_id = $1 AND item_id = $2 FOR UPDATE",
                task_id,
                item_id,
            )
            if current is None:
                raise NotFoundError("task item", item_id)
            if current["status"] != domain.PENDING:
                raise AnnotationError(
                    f"item {item_id!r} was already reviewed ({current['status']})", 409
                )
            if action != "correct" and corrections:
                raise AnnotationError(f"action {action!r} takes no corrections; use 'correct'")
            for correction in corrections:
                await self._apply_correction(conn, project_id, item_id, correction, reviewer)
            changed = await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM annotations WHERE item_id = $1
                       AND project_id = $2 AND (
                           (source = 'human' AND created_at >= $3) OR modified_at >= $3
                           OR deleted_at >= $3))""",
                item_id,
                project_id,
                current["added_at"],
            )
            status = domain.review_outcome(
                action, len(corrections), bool(changed) and not corrections
            )
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
            event = make_event(
                TaskItemReviewed(
                    task_id=task_id,
                    project_id=project_id,
                    item_id=item_id,
                    status=status,
                    reviewer=reviewer,
                ),
                source=SOURCE,
                subject=item_id,
            )
            await enqueue_many(conn, [event], self._exchange)
        return _task_item_view(row)

    async def _apply_correction(
        self,
        conn: asyncpg.Connection,
        project_id: str,
        item_id: str,
        correction: dict[str, Any],
        reviewer: str,
    ) -> None:
        op = correction["op"]
        if op == "create":
            await self.create_human_annotation(
                project_id,
                item_id,
                correction["type"],
                correction["label"],
                correction.get("coordinates"),
                correction.get("text"),
                reviewer,
                conn=conn,
            )
            return
        annotation_id = correction["annotation_id"]
        owner = await conn.fetchval(
            "SELECT item_id FROM annotations WHERE id = $1 AND project_id = $2",
            annotation_id,
            project_id,
        )
        if owner != item_id:
            raise AnnotationError(
                f"annotation {annotation_id!r} does not belong to item {item_id!r}", 422
            )
        if op == "delete":
            await self.delete_annotation(project_id, annotation_id, reviewer, conn=conn)
        else:
            changes: dict[str, Any] = {
                k: correction[k]
                for k in ("type", "label", "coordinates", "text")
                if k in correction
            }
            await self.edit_annotation(project_id, annotation_id, changes, reviewer, conn=conn)

    async def progress(self, project_id: str, task_id: str) -> dict[str, Any]:
        """Counts per status."""
        await self.get_task(project_id, task_id)
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n FROM task_items WHERE task_id = $1 GROUP BY status",
            task_id,
        )
        return domain.progress({r["status"]: r["n"] for r in rows})

    async def acceptance(
        self, project_id: str, task_id: str | None = None, dataset_id: str | None = None
    ) -> list[domain.Acceptance]:
        """Acceptance per model version over a task's (or the project's) reviewed items."""
        if task_id is not None:
            await self.get_task(project_id, task_id)
        rows = await self.pool.fetch(
            """SELECT ti.model_name, ti.model_id, ti.model_version, ti.status, count(*) AS n
               FROM task_items ti JOIN tasks t ON t.id = ti.task_id
               WHERE t.project_id = $1 AND ($2::text IS NULL OR t.id = $2)
                 AND ($3::text IS NULL OR t.dataset_id = $3)
                 AND ti.status <> 'pending-review'
               GROUP BY 1, 2, 3, 4""",
            project_id,
            task_id,
            dataset_id,
        )
        return domain.acceptance_by_model(
            (ModelKey(r["model_name"], r["model_id"], r["model_version"]), r["status"], r["n"])
            for r in rows
        )

    # ------------------------------------------------------------------ export

    async def export_rows(
        self,
        project_id: str,
        dataset_id: str,
        *,
        task_id: str | None = None,
        statuses: Sequence[str] = (),
    ) -> tuple[list[domain.ImageInfo], list[dict[str, Any]]]:
        """Images and current annotations of a dataset, or of a task's items."""
        if task_id is not None:
            item_rows = await self.pool.fetch(
                """SELECT ti.item_id AS id, i.filename, i.width, i.height
                   FROM task_items ti LEFT JOIN items i ON i.id = ti.item_id
                   WHERE ti.task_id = $1 AND (cardinality($2::text[]) = 0
                                              OR ti.status = ANY($2::text[]))
                     AND NOT COALESCE(i.deleted, false)
                   ORDER BY ti.added_at, ti.item_id""",
                task_id,
                list(statuses),
            )
        else:
            item_rows = await self.pool.fetch(
                """SELECT id, filename, width, height FROM items
                   WHERE project_id = $1 AND dataset_id = $2 AND NOT deleted
                   UNION
                   SELECT DISTINCT a.item_id, NULL, NULL::int, NULL::int FROM annotations a
                   WHERE a.project_id = $1 AND a.dataset_id = $2 AND a.deleted_at IS NULL
                     AND NOT EXISTS (SELECT 1 FROM items i WHERE i.id = a.item_id)
                   ORDER BY 1""",
                project_id,
                dataset_id,
            )
        images = [
            domain.ImageInfo(r["id"], r["filename"] or r["id"], r["width"] or 0, r["height"] or 0)
            for r in item_rows
        ]
        annotations = await self.pool.fetch(
            f"""SELECT {ANNOTATION_COLUMNS} FROM annotations
                WHERE project_id = $1 AND dataset_id = $2 AND item_id = ANY($3::text[])
                  AND deleted_at IS NULL
                ORDER BY item_id, created_at, idx NULLS LAST, id""",
            project_id,
            dataset_id,
            [image.item_id for image in images],
        )
        return images, [annotation_view(a) for a in annotations]


def _task_item_view(row: asyncpg.Record) -> dict[str, Any]:
    keys = set(row.keys())
    model = (
        {"name": row["model_name"], "model_id": row["model_id"], "version": row["model_version"]}
        if row["model_version"] is not None
        else None
    )
    view: dict[str, Any] = {
        "task_id": row["task_id"],
        "item_id": row["item_id"],
        "status": row["status"],
        "added_at": row["added_at"],
        "added_by": row["added_by"],
        "model": model,
        "execution_id": row["execution_id"],
        "reviewer": row["reviewer"],
        "reviewed_at": row["reviewed_at"],
    }
    if "filename" in keys:
        view["item"] = {"filename": row["filename"], "width": row["width"], "height": row["height"]}
    return view
