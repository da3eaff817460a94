"""The ``items`` table: the item facts exports need, as the dataset service announced them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from annotation_service import domain
from annotation_service.domain import NotFoundError
from annotation_service.repository.base import Store
from common.contracts import ItemSnapshot


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Items(Store):
    """Items of every project, from ``item.*`` events."""

    async def upsert_items(self, changes: Sequence[tuple[ItemSnapshot, bool]]) -> None:
        """Record what item events say, ``(item, deleted)`` each, in one statement, unless
        a newer snapshot is already stored. A deletion is final (item ids are never
        reused), whatever order events come in.

        Several changes of one item are merged first by the same rule (the newest snapshot
        wins, a later one on a tie; a deletion is final): one statement may change a row
        only once.
        """
        merged: dict[str, tuple[ItemSnapshot, bool]] = {}
        for item, deleted in changes:
            seen = merged.get(item.id)
            if seen is not None:
                newest = item if item.updated_at >= seen[0].updated_at else seen[0]
                item, deleted = newest, deleted or seen[1]
            merged[item.id] = (item, deleted)
        items = [item for item, _ in merged.values()]
        systems = [
            item.metadata.get("system", {}) if isinstance(item.metadata, dict) else {}
            for item in items
        ]
        await self.pool.execute(
            """INSERT INTO items (id, project_id, dataset_id, filename, width, height, mimetype,
                   version_at, deleted)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
                   $6::int[], $7::text[], $8::timestamptz[], $9::boolean[])
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
            [item.id for item in items],
            [item.project_id for item in items],
            [item.dataset_id for item in items],
            [item.filename for item in items],
            [_int(system.get("width")) for system in systems],
            [_int(system.get("height")) for system in systems],
            [m if isinstance(m := system.get("mimetype"), str) else None for system in systems],
            [item.updated_at for item in items],
            [deleted for _, deleted in merged.values()],
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

    async def item_place(self, conn: asyncpg.Connection, item_id: str) -> tuple[str, str] | None:
        """The (project, dataset) of an item from its events; ``None`` while unknown."""
        row = await conn.fetchrow("SELECT project_id, dataset_id FROM items WHERE id = $1", item_id)
        return None if row is None else (row["project_id"], row["dataset_id"])

    async def known_items(
        self, conn: asyncpg.Connection, project_id: str, dataset_id: str, item_ids: list[str]
    ) -> set[str]:
        """Which of ``item_ids`` this service knows in the dataset (events or annotations)."""
        known = await conn.fetch(
            """SELECT id FROM items
               WHERE id = ANY($1::text[]) AND project_id = $2 AND dataset_id = $3
                 AND NOT deleted
               UNION
               SELECT item_id FROM annotations
               WHERE item_id = ANY($1::text[]) AND project_id = $2 AND dataset_id = $3""",
            item_ids,
            project_id,
            dataset_id,
        )
        return {r["id"] for r in known}

    async def dataset_images(self, project_id: str, dataset_id: str) -> list[domain.ImageInfo]:
        """The images of a dataset (items, and items known only by their annotations)."""
        rows = await self.pool.fetch(
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
        return [image_of(r) for r in rows]


def image_of(row: asyncpg.Record) -> domain.ImageInfo:
    """An export image of a row with ``id, filename, width, height``."""
    return domain.ImageInfo(
        row["id"], row["filename"] or row["id"], row["width"] or 0, row["height"] or 0
    )
