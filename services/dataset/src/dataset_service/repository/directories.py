"""A dataset's directory tree, one level at a time, counted in SQL.

Items carry their directory (``dir``, canonical: ``/``, ``/a``, ``/a/b``); a directory
exists while an item is in it or below it. A listing reads one range of the
``(dataset_id, dir COLLATE "C")`` index, the parent's subtree, and groups it by the
next path segment in PostgreSQL, so it answers one row per child whatever the item count.
"""

from __future__ import annotations

from pydantic import BaseModel

from dataset_service.repository.base import Store


class Directory(BaseModel):
    """A subdirectory and what is in it."""

    dir: str
    """Its full path (``/a/b``)."""
    name: str
    """Its last segment (``b``)."""
    item_count: int
    """Items in it and below it."""
    has_children: bool
    """Whether it has subdirectories of its own."""


class DirectoryListing(BaseModel):
    """One directory's subdirectories with their item counts."""

    dataset_id: str
    parent: str
    item_count: int
    """Items in ``parent`` and below it."""
    direct_count: int
    """Items in ``parent`` itself."""
    children: list[Directory]
    """Subdirectories by name (code point order)."""
    truncated: bool
    """Whether more subdirectories exist than the listing's limit gave."""


def subtree_range(parent: str) -> tuple[str, str]:
    """``(prefix, upper)``: the directories below ``parent`` are those ``>= prefix`` and
    ``< upper`` in code point order (``'0'`` follows ``'/'``)."""
    prefix = "/" if parent == "/" else f"{parent}/"
    return prefix, prefix[:-1] + "0"


class Directories(Store):
    """Directory listings (visible items only, as item queries count them by default)."""

    async def list_directories(self, dataset_id: str, parent: str, limit: int) -> DirectoryListing:
        """The subdirectories of canonical directory ``parent``; the caller has checked
        that the dataset is the caller's project's."""
        prefix, upper = subtree_range(parent)
        rows = await self.pool.fetch(
            """WITH scoped AS (
                   SELECT CASE WHEN dir = $2 THEN NULL
                               ELSE substr(dir, length($3) + 1) END AS rest
                   FROM items
                   WHERE dataset_id = $1
                     AND dir COLLATE "C" >= $2 AND dir COLLATE "C" < $4
                     AND (dir = $2 OR dir COLLATE "C" >= $3)
                     AND NOT hidden AND type = 'file'),
               grouped AS (
                   SELECT split_part(rest, '/', 1) AS name, count(*) AS item_count,
                          bool_or(strpos(rest, '/') > 0) AS has_children
                   FROM scoped GROUP BY 1)
               SELECT name, item_count, has_children, sum(item_count) OVER () AS total
               FROM grouped ORDER BY name COLLATE "C" NULLS FIRST LIMIT $5""",
            dataset_id,
            parent,
            prefix,
            upper,
            limit + 2,  # the parent's own row, and one to tell a truncated listing
        )
        direct = 0
        total = int(rows[0]["total"]) if rows else 0
        children: list[Directory] = []
        for row in rows:
            if row["name"] is None:
                direct = int(row["item_count"])
                continue
            children.append(
                Directory(
                    dir=f"{prefix}{row['name']}",
                    name=row["name"],
                    item_count=int(row["item_count"]),
                    has_children=bool(row["has_children"]),
                )
            )
        truncated = len(children) > limit
        return DirectoryListing(
            dataset_id=dataset_id,
            parent=parent,
            item_count=total,
            direct_count=direct,
            children=children[:limit],
            truncated=truncated,
        )
