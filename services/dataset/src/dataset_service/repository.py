"""Persistence of projects, keys, datasets and items; events go to the outbox in the
same transaction as the change they announce."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from common.contracts import (
    Contract,
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemSnapshot,
    ItemUpdated,
)
from common.dql import Node, SortKey
from common.envelope import make_event
from common.messaging import NOTIFY_RELAY, enqueue, outbox_insert
from common.topology import DATASET, Topology
from dataset_service.domain import ConflictError, NotFoundError, join_filename
from dataset_service.dql_sql import compile_filter, compile_order_by

SOURCE = "/services/dataset"
KEY_CACHE_SECONDS = 30.0
ITEM_COLUMNS = "id, project_id, dataset_id, name, filename, dir, type, hidden, created_at, updated_at, metadata"


DATASET_CACHE_SIZE = 10_000
"""Datasets whose project ``dataset_project`` remembers (forgotten all at once when full)."""


def new_id(prefix: str) -> str:
    """A new entity id, e.g. ``ds_3f2a...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def hash_key(key: str) -> str:
    """How an API key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


class Project(BaseModel):
    """A project: owner of datasets, keys, models and budgets."""

    id: str
    name: str
    created_at: datetime


class ApiKey(BaseModel):
    """A project API key; ``key`` is only ever shown once, at creation."""

    id: str
    project_id: str
    name: str
    created_at: datetime
    key: str | None = None


class Dataset(BaseModel):
    """A dataset."""

    id: str
    project_id: str
    name: str
    description: str
    created_at: datetime
    item_count: int = 0


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item to insert (its bytes already checked and stored)."""

    project_id: str
    dataset_id: str
    name: str
    filename: str
    dir: str
    metadata: dict[str, Any]
    origin_id: str
    """Id of the upload request or ingest command that makes it (idempotency)."""


def _item(row: asyncpg.Record) -> ItemSnapshot:
    return ItemSnapshot(**dict(row))


@dataclass(frozen=True)
class Repository:
    """All SQL of the dataset service."""

    pool: asyncpg.Pool
    topology: Topology
    key_cache: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Known API keys (hash -> expiry, project); unknown keys are never cached."""
    dataset_projects: dict[str, str] = field(default_factory=dict)
    """dataset id -> project id, of datasets seen by ingest commands."""

    # ------------------------------------------------------------------ projects, keys

    async def create_project(self, name: str) -> Project:
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO projects (id, name) VALUES ($1, $2) RETURNING *", new_id("prj"), name
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a project named {name!r} already exists") from exc
        return Project(**dict(row))

    async def create_api_key(self, project_id: str, name: str) -> ApiKey:
        key = "pk_" + secrets.token_urlsafe(32)
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO api_keys (id, project_id, name, key_hash) VALUES ($1, $2, $3, $4)
                   RETURNING id, project_id, name, created_at""",
                new_id("key"),
                project_id,
                name,
                hash_key(key),
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"project {project_id} not found") from exc
        return ApiKey(**dict(row), key=key)

    async def project_for_key(self, key: str) -> str | None:
        """The key's project. Known keys are cached briefly: every request carries one."""
        digest = hash_key(key)
        cached = self.key_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        project: str | None = await self.pool.fetchval(
            "SELECT project_id FROM api_keys WHERE key_hash = $1", digest
        )
        if project is not None:
            self.key_cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, project)
        return project

    async def dataset_exists(self, project_id: str, dataset_id: str) -> None:
        """Raise ``NotFoundError`` unless the dataset is the project's (cheap: no counts)."""
        found = await self.pool.fetchval(
            "SELECT 1 FROM datasets WHERE id = $1 AND project_id = $2", dataset_id, project_id
        )
        if found is None:
            raise NotFoundError(f"dataset {dataset_id} not found")

    # ------------------------------------------------------------------ datasets

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
            items = [_item(r) for r in rows]
            for item in items:
                await self._publish(conn, ItemDeleted(item=item), item.id)
        return items

    # ------------------------------------------------------------------ items

    async def _publish(self, conn: asyncpg.Connection, event: Contract, subject: str) -> None:
        await enqueue(
            conn,
            make_event(event, source=SOURCE, subject=subject),
            self.topology.events_exchange(DATASET),
        )

    async def insert_items(
        self, batch: Sequence[NewItem]
    ) -> list[tuple[ItemSnapshot, bool] | None]:
        """Insert items and their ``item.created.v1`` events; per item ``(item, created)``,
        or ``None`` when its dataset does not exist (in its project).

        One statement (one round trip, atomic on its own): the rows, their outbox events
        and the relay's wake-up. The snapshots the events carry are built here, so the
        rows take their ids and timestamps from them. Idempotent on ``origin_id``: a
        repeated upload request or ingest command gets the item it created the first
        time, with ``created=False``. A name already taken in its dataset raises
        :class:`ConflictError` and inserts nothing.
        """
        now = datetime.now(UTC)
        items = [
            ItemSnapshot(
                id=new_id("itm"),
                project_id=new.project_id,
                dataset_id=new.dataset_id,
                name=new.name,
                filename=new.filename,
                dir=new.dir,
                type="file",
                hidden=False,
                created_at=now,
                updated_at=now,
                metadata=new.metadata,
            )
            for new in batch
        ]
        events = [make_event(ItemCreated(item=i), source=SOURCE, subject=i.id) for i in items]
        try:
            rows = await self.pool.fetch(
                f"""WITH new AS (
                        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                            $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::text[],
                            $10::bytea[])
                            AS n(id, project_id, dataset_id, name, filename, dir, metadata,
                                 origin_id, event_id, body)),
                    item AS (
                        INSERT INTO items (id, project_id, dataset_id, name, filename, dir,
                                           metadata, origin_id, created_at, updated_at)
                        SELECT id, project_id, dataset_id, name, filename, dir, metadata,
                               origin_id, $11, $11
                        FROM new
                        WHERE EXISTS (SELECT 1 FROM datasets d
                                      WHERE d.id = new.dataset_id
                                        AND d.project_id = new.project_id)
                        ON CONFLICT (origin_id) DO NOTHING
                        RETURNING id),
                    event AS ({
                    outbox_insert(
                        "new JOIN item USING (id)",
                        event_id="new.event_id",
                        exchange="$12",
                        routing_key="$13",
                        body="new.body",
                    )
                })
                    SELECT id, {NOTIFY_RELAY} FROM item""",
                [i.id for i in items],
                [i.project_id for i in items],
                [i.dataset_id for i in items],
                [i.name for i in items],
                [i.filename for i in items],
                [i.dir for i in items],
                [i.metadata for i in items],
                [new.origin_id for new in batch],
                [e.id for e in events],
                [e.to_json_bytes() for e in events],
                now,
                self.topology.events_exchange(DATASET),
                ItemCreated.routing_key,
            )
        except asyncpg.UniqueViolationError as exc:
            # ON CONFLICT covers origin_id only: a twin of the same request or command
            # inserted concurrently (a redelivery, a client retry) makes the name index
            # answer first. Once it committed, that is a duplicate, not a clash.
            twins = await self._by_origin([new.origin_id for new in batch])
            if len(twins) == len(batch):
                return [(twins[new.origin_id], False) for new in batch]
            taken = exc.detail or "a name in this batch"
            raise ConflictError(f"an item with that name already exists ({taken})") from exc
        inserted = {row["id"] for row in rows}
        results: list[tuple[ItemSnapshot, bool] | None] = [
            (item, True) if item.id in inserted else None for item in items
        ]
        others = [new.origin_id for new, result in zip(batch, results, strict=True) if not result]
        if others:
            existing = await self._by_origin(others)
            results = [
                result or ((existing[new.origin_id], False) if new.origin_id in existing else None)
                for new, result in zip(batch, results, strict=True)
            ]
        return results

    async def _by_origin(self, origins: Sequence[str]) -> dict[str, ItemSnapshot]:
        """The items the given requests or commands created, by origin id."""
        rows = await self.pool.fetch(
            f"SELECT origin_id, {ITEM_COLUMNS} FROM items WHERE origin_id = ANY($1)", origins
        )
        return {row["origin_id"]: _item(row) for row in rows}

    async def get_item(self, project_id: str, item_id: str) -> ItemSnapshot:
        row = await self.pool.fetchrow(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1 AND project_id = $2",
            item_id,
            project_id,
        )
        if row is None:
            raise NotFoundError(f"item {item_id} not found")
        return _item(row)

    async def update_item(
        self,
        project_id: str,
        item_id: str,
        *,
        user_metadata: dict[str, Any] | None,
        fields: dict[str, Any],
    ) -> ItemSnapshot:
        """Apply a change; one event per kind of change (metadata, other fields)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1 AND project_id = $2 FOR UPDATE",
                item_id,
                project_id,
            )
            if row is None:
                raise NotFoundError(f"item {item_id} not found")
            before = _item(row)
            changed = sorted(k for k, v in fields.items() if getattr(before, k) != v)
            previous_user = dict(before.metadata.get("user") or {})
            metadata_changed = user_metadata is not None and user_metadata != previous_user
            if not changed and not metadata_changed:
                return before
            metadata = dict(before.metadata)
            if metadata_changed:
                metadata["user"] = user_metadata
            values = {k: fields[k] for k in changed}
            if "name" in values or "dir" in values:
                values["filename"] = join_filename(
                    values.get("dir", before.dir), values.get("name", before.name)
                )
            assignments = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=4))
            try:
                after_row = await conn.fetchrow(
                    f"""UPDATE items SET metadata = $3, updated_at = now()
                        {", " + assignments if assignments else ""}
                        WHERE id = $1 AND project_id = $2 RETURNING {ITEM_COLUMNS}""",
                    item_id,
                    project_id,
                    metadata,
                    *values.values(),
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(
                    f"an item {values.get('filename')!r} already exists in this dataset"
                ) from exc
            after = _item(after_row)
            if metadata_changed:
                await self._publish(
                    conn,
                    ItemMetadataUpdated(item=after, previous_user_metadata=previous_user),
                    item_id,
                )
            if changed:
                await self._publish(conn, ItemUpdated(item=after, changed=changed), item_id)
        return after

    async def delete_item(self, project_id: str, item_id: str) -> ItemSnapshot:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"DELETE FROM items WHERE id = $1 AND project_id = $2 RETURNING {ITEM_COLUMNS}",
                item_id,
                project_id,
            )
            if row is None:
                raise NotFoundError(f"item {item_id} not found")
            item = _item(row)
            await self._publish(conn, ItemDeleted(item=item), item_id)
        return item

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any item still references content ``sha256``."""
        used: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM items WHERE metadata #>> '{system,sha256}' = $1)", sha256
        )
        return used

    async def query_items(
        self,
        project_id: str,
        dataset_id: str,
        node: Node,
        sort: tuple[SortKey, ...],
        page: int,
        page_size: int,
    ) -> tuple[list[ItemSnapshot], int]:
        """One page of a DQL query and the total count."""
        where, params = compile_filter(node, start=3)
        order = compile_order_by(sort)
        base = f"FROM items WHERE project_id = $1 AND dataset_id = $2 AND ({where})"
        async with self.pool.acquire() as conn:
            total: int = await conn.fetchval(
                f"SELECT count(*) {base}", project_id, dataset_id, *params
            )
            offset, limit = len(params) + 3, len(params) + 4
            rows = await conn.fetch(
                f"SELECT {ITEM_COLUMNS} {base} {order} OFFSET ${offset} LIMIT ${limit}",
                project_id,
                dataset_id,
                *params,
                page * page_size,
                page_size,
            )
        return [_item(r) for r in rows], total
