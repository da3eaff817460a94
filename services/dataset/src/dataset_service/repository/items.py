"""Items: inserted in batches with their ``item.created.v1`` events in one statement,
changed and deleted with their events, queried with DQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from common.contracts import (
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemSnapshot,
    ItemUpdated,
    encode_inline_blob,
)
from common.dql import Node, SortKey
from common.envelope import make_event
from common.ids import new_id
from common.outbox import notify_relay, outbox_insert
from common.topology import DATASET
from dataset_service.domain import ConflictError, NotFoundError, join_filename
from dataset_service.repository.base import ITEM_COLUMNS, SOURCE, Store, item_of
from dataset_service.repository.dql_sql import (
    compile_filter,
    compile_keyset,
    compile_order_by,
    keyset_keys,
)

BLOB_LEASE_GRACE_SECONDS = 900.0
"""How long an upload's lease on a blob keeps it from being deleted (an upload holds it
for milliseconds; one that crashed leaves it, and the blob stays until it expires)."""

FILTER_FIRST_MAX_ROWS = 5_000
"""A page query whose filter matches at most this many rows (the count, known exactly
before the page is read) filters first and sorts what it found. Left to itself the
planner may instead walk the sort order's index and filter as it goes, which it prices
from its estimate of the filter's share: for a metadata containment that estimate comes
from ANALYZE's sample (20 to 7,080 rows for the 2,000 of the benchmark's query, changing
with every ANALYZE), and it assumes matches are spread evenly along the sort order. When
they are not (a camera whose items all sit in one directory), the walk reads most of the
dataset: 45-52 ms against 10-12 ms filtered first on the benchmark's 100,000 items. The
fence (``OFFSET 0`` keeps the subquery from being merged into the sorted query) bounds a
page at reading and sorting these many rows; above it, matches are dense enough that
the walk finds a page soon, and the planner chooses."""


def page_source(base: str, total: int) -> str:
    """The ``FROM`` of a page query over ``base`` (``FROM items WHERE ...``) that matched
    ``total`` rows: fenced when it is small enough (:data:`FILTER_FIRST_MAX_ROWS`)."""
    if total > FILTER_FIRST_MAX_ROWS:
        return base
    return f"FROM (SELECT {ITEM_COLUMNS} {base} OFFSET 0) AS matched"


_LOCK_BLOB = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
"""The per-content lock that blob deletions and new leases of one sha256 take."""


def _reused(origin_id: str) -> ConflictError:
    kind, _, rest = origin_id.partition(":")
    if kind == "ingest":
        what = f"command id {rest!r}"
    else:
        what = f"Idempotency-Key {rest.split(':', 2)[-1]!r}"  # http:<project>:<dataset>:<key>
    return ConflictError(
        f"{what} was already used with different data (dataset, content, name, dir or "
        "metadata differ); a new request needs a new id"
    )


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
    origin_digest: str | None = None
    """Digest of what that request asked for: the same id with other data is refused."""
    inline_blob: bytes | None = None
    """The blob's bytes, to carry inside the ``item.created.v1`` (small blobs only)."""
    lease: str | None = None
    """The upload's lease on the blob (:meth:`Items.lease_blobs`), released by the
    statement that inserts the item."""


class Items(Store):
    """Items."""

    async def insert_items(
        self, batch: Sequence[NewItem]
    ) -> list[tuple[ItemSnapshot, bool] | ConflictError | None]:
        """Insert items and their ``item.created.v1`` events; per item ``(item, created)``,
        ``None`` when its dataset does not exist (in its project), or a
        :class:`ConflictError` when its request id was used before with other data.

        One statement (one round trip, atomic on its own): the rows, their outbox events,
        the release of the uploads' leases and the relay's wake-up. The snapshots the
        events carry are built here, so the rows take their ids and timestamps from them. Idempotent on ``origin_id``: a
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
        events = [
            make_event(
                ItemCreated(
                    item=i,
                    blob_base64=None
                    if new.inline_blob is None
                    else encode_inline_blob(new.inline_blob),
                ),
                source=SOURCE,
                subject=i.id,
            )
            for i, new in zip(items, batch, strict=True)
        ]
        try:
            rows = await self.pool.fetch(
                f"""WITH new AS (
                        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                            $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::text[],
                            $10::bytea[], $14::text[])
                            AS n(id, project_id, dataset_id, name, filename, dir, metadata,
                                 origin_id, event_id, body, origin_digest)),
                    item AS (
                        INSERT INTO items (id, project_id, dataset_id, name, filename, dir,
                                           metadata, origin_id, origin_digest, created_at,
                                           updated_at)
                        SELECT id, project_id, dataset_id, name, filename, dir, metadata,
                               origin_id, origin_digest, $11, $11
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
                }),
                    released AS (DELETE FROM blob_leases WHERE id = ANY($15::text[]))
                    SELECT id, {notify_relay("event")} FROM item""",
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
                [new.origin_digest for new in batch],
                [new.lease for new in batch if new.lease is not None],
            )
        except asyncpg.UniqueViolationError as exc:
            # ON CONFLICT covers origin_id only: a twin of the same request or command
            # inserted concurrently (a redelivery, a client retry) makes the name index
            # answer first. Once it committed, that is a duplicate, not a clash.
            twins = await self._by_origin([new.origin_id for new in batch])
            if len(twins) == len(batch):
                return [self._earlier(new, twins[new.origin_id]) for new in batch]
            taken = exc.detail or "a name in this batch"
            raise ConflictError(f"an item with that name already exists ({taken})") from exc
        inserted = {row["id"] for row in rows}
        results: list[tuple[ItemSnapshot, bool] | ConflictError | None] = [
            (item, True) if item.id in inserted else None for item in items
        ]
        others = [new.origin_id for new, result in zip(batch, results, strict=True) if not result]
        if others:
            existing = await self._by_origin(others)
            results = [
                result
                or (
                    self._earlier(new, existing[new.origin_id])
                    if new.origin_id in existing
                    else None
                )
                for new, result in zip(batch, results, strict=True)
            ]
        return results

    @staticmethod
    def _earlier(
        new: NewItem, earlier: tuple[ItemSnapshot, str | None]
    ) -> tuple[ItemSnapshot, bool] | ConflictError:
        """The item an earlier request with ``new``'s id created, unless that request
        asked for something else."""
        item, digest = earlier
        if digest is not None and new.origin_digest is not None and digest != new.origin_digest:
            return _reused(new.origin_id)
        return item, False

    async def _by_origin(
        self, origins: Sequence[str]
    ) -> dict[str, tuple[ItemSnapshot, str | None]]:
        """The items the given requests or commands created and the digests of what they
        asked for, by origin id."""
        rows = await self.pool.fetch(
            f"""SELECT origin_id, origin_digest, {ITEM_COLUMNS} FROM items
                WHERE origin_id = ANY($1)""",
            origins,
        )
        return {
            row["origin_id"]: (
                ItemSnapshot(
                    **{
                        k: v
                        for k, v in dict(row).items()
                        if k not in ("origin_id", "origin_digest")
                    }
                ),
                row["origin_digest"],
            )
            for row in rows
        }

    async def get_item(self, project_id: str, item_id: str) -> ItemSnapshot:
        row = await self.pool.fetchrow(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1 AND project_id = $2",
            item_id,
            project_id,
        )
        if row is None:
            raise NotFoundError(f"item {item_id} not found")
        return item_of(row)

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
            before = item_of(row)
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
            after = item_of(after_row)
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
            item = item_of(row)
            await self._publish(conn, ItemDeleted(item=item), item_id)
        return item

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any item still references content ``sha256``."""
        used: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM items WHERE metadata #>> '{system,sha256}' = $1)", sha256
        )
        return used

    async def lease_blobs(self, sha256s: Sequence[str]) -> list[str]:
        """Hold the content of each of ``sha256s`` for an upload about to name it in an
        item (before the upload writes or checks the blob); the lease ids, in order,
        for :meth:`release_leases` or :attr:`NewItem.lease`.

        Waits for a deletion of the same content in progress: the upload writes the blob
        after that deletion, never before it. The uploads in flight lease together (one
        statement: one round trip instead of one each).
        """
        leases = [new_id("lease") for _ in sha256s]
        # One statement is one transaction: the locks are held until the leases are
        # committed. They are taken in one order (by key), so two batches that share
        # contents cannot wait on each other.
        await self.pool.execute(
            """WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[]) AS w(sha256, id)),
                    locked AS (
                        SELECT count(*) AS n FROM (
                            SELECT pg_advisory_xact_lock(k) FROM (
                                SELECT DISTINCT hashtextextended(sha256, 0) AS k
                                FROM wanted ORDER BY k) keys) l)
               INSERT INTO blob_leases (id, sha256)
               SELECT wanted.id, wanted.sha256 FROM wanted, locked WHERE locked.n >= 0""",
            list(sha256s),
            leases,
        )
        return leases

    async def release_leases(self, leases: Sequence[str]) -> None:
        """The uploads holding ``leases`` have named their blobs in items, or given up."""
        if leases:
            await self.pool.execute("DELETE FROM blob_leases WHERE id = ANY($1)", list(leases))

    async def delete_blob_unless_used(
        self, sha256: str, delete: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run ``delete`` (remove the blob of content ``sha256``) unless an item names the
        content or an upload holds a lease on it; whether it ran.

        The check and the deletion hold the content's lock, which a new lease waits for:
        an upload either leased the content first (the blob stays) or writes it again
        after the deletion.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_BLOB, sha256)
            used: bool = await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM items WHERE metadata #>> '{system,sha256}' = $1)
                       OR EXISTS (SELECT 1 FROM blob_leases WHERE sha256 = $1
                                  AND taken_at > now() - make_interval(secs => $2))""",
                sha256,
                BLOB_LEASE_GRACE_SECONDS,
            )
            if used:
                return False
            await conn.execute(
                """DELETE FROM blob_leases WHERE sha256 = $1
                   AND taken_at <= now() - make_interval(secs => $2)""",
                sha256,
                BLOB_LEASE_GRACE_SECONDS,
            )
            await delete()
        return True

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
                f"SELECT {ITEM_COLUMNS} {page_source(base, total)} {order} "
                f"OFFSET ${offset} LIMIT ${limit}",
                project_id,
                dataset_id,
                *params,
                page * page_size,
                page_size,
            )
        return [item_of(r) for r in rows], total

    async def seek_items(
        self,
        project_id: str,
        dataset_id: str,
        node: Node,
        sort: tuple[SortKey, ...],
        page_size: int,
        after: Sequence[Any] | None = None,
        *,
        backwards: bool = False,
    ) -> tuple[list[ItemSnapshot], bool, int]:
        """One page of a DQL query by keyset: the items following ``after`` (the sort
        values of an item, as :func:`keyset_keys` lists them; ``None``: from the start),
        or preceding it when ``backwards``; whether more follow in that direction; the
        total count. Page N costs what page 1 does (no OFFSET to skip through).
        """
        keys = keyset_keys(sort)
        if backwards:
            keys = tuple(SortKey(k.field, descending=not k.descending) for k in keys)
        where, params = compile_filter(node, start=3)
        base = f"FROM items WHERE project_id = $1 AND dataset_id = $2 AND ({where})"
        seek = ""
        seek_params: list[Any] = []
        if after is not None:
            condition, seek_params = compile_keyset(keys, after, start=len(params) + 3)
            seek = f" AND {condition}"
        limit = len(params) + len(seek_params) + 3
        # The project is checked once on the dataset, not on each row: the count can then
        # be an index-only scan (items_dataset_*: INCLUDE (hidden, type)).
        counted = (
            f"FROM items WHERE dataset_id = $2 AND ({where}) AND EXISTS "
            "(SELECT 1 FROM datasets d WHERE d.id = $2 AND d.project_id = $1)"
        )
        async with self.pool.acquire() as conn:
            total: int = await conn.fetchval(
                f"SELECT count(*) {counted}", project_id, dataset_id, *params
            )
            rows = await conn.fetch(
                f"SELECT {ITEM_COLUMNS} {page_source(base + seek, total)} "
                f"{compile_order_by(keys)} LIMIT ${limit}",
                project_id,
                dataset_id,
                *params,
                *seek_params,
                page_size + 1,
            )
        found = [item_of(r) for r in rows[:page_size]]
        if backwards:
            found.reverse()
        return found, len(rows) > page_size, total
