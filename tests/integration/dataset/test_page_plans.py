"""A filtered page on a correlated dataset: the same answer whether it is filtered first
(small counts) or left to the planner, and no walk of the sort index when filtered first.

The items mimic the benchmark's trap: every item of one camera sits in one directory,
so a walk of the filename index finds the first match only after most of the dataset.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from common.db import apply_migrations
from common.dql import parse_filter, parse_sort
from common.outbox import COMMON_MIGRATIONS
from common.topology import Topology
from dataset_service.app import MIGRATIONS
from dataset_service.repository import Repository
from dataset_service.repository import items as items_module
from dataset_service.repository.base import ITEM_COLUMNS
from dataset_service.repository.dql_sql import compile_filter, compile_order_by

ITEMS = 6_000
CAMERAS = 50
PROJECT, DATASET = "prj_plans", "ds_plans"
FILTER = {"metadata.user.camera": "cam-7"}


def _row(i: int) -> tuple[Any, ...]:
    directory = f"/batch{i % 10}"
    name = f"img{i:06d}.jpg"
    metadata = {"system": {"mimetype": "image/jpeg"}, "user": {"camera": f"cam-{i % CAMERAS}"}}
    return (f"itm_{i:08d}", PROJECT, DATASET, name, f"{directory}/{name}", directory,
            json.dumps(metadata))  # fmt: skip


@pytest.fixture
async def repo(pg_pool: asyncpg.Pool, pg_schema: str) -> Repository:
    await apply_migrations(pg_pool, pg_schema, COMMON_MIGRATIONS, MIGRATIONS)
    async with pg_pool.acquire() as conn:
        await conn.execute("INSERT INTO projects (id, name) VALUES ($1, 'plans')", PROJECT)
        await conn.execute(
            "INSERT INTO datasets (id, project_id, name) VALUES ($1, $2, 'plans')",
            DATASET,
            PROJECT,
        )
        await conn.executemany(
            "INSERT INTO items (id, project_id, dataset_id, name, filename, dir, metadata) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
            [_row(i) for i in range(ITEMS)],
        )
        await conn.execute("ANALYZE items")
    return Repository(pg_pool, Topology())


def _expected() -> list[str]:
    rows = [_row(i) for i in range(ITEMS) if i % CAMERAS == 7]
    return [r[0] for r in sorted(rows, key=lambda r: (r[4], r[0]))]


async def _pages(repo: Repository) -> tuple[list[str], list[str], int]:
    """The second offset page and the first three keyset pages, ids in order."""
    node = parse_filter(FILTER, defaults=True)
    sort = parse_sort([{"field": "filename", "order": "asc"}])
    offset_page, total = await repo.query_items(PROJECT, DATASET, node, sort, 1, 25)
    seeked: list[str] = []
    after: list[Any] | None = None
    for _ in range(3):
        page, _more, _total = await repo.seek_items(PROJECT, DATASET, node, sort, 25, after)
        seeked += [item.id for item in page]
        after = [page[-1].filename, page[-1].id]
    return [item.id for item in offset_page], seeked, total


@pytest.mark.parametrize(
    "limit", [items_module.FILTER_FIRST_MAX_ROWS, 0], ids=["fenced", "planner"]
)
async def test_pages_are_the_same_either_way(
    repo: Repository, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(items_module, "FILTER_FIRST_MAX_ROWS", limit)
    expected = _expected()
    offset_page, seeked, total = await _pages(repo)
    assert total == len(expected) == ITEMS // CAMERAS
    assert offset_page == expected[25:50]
    assert seeked == expected[:75]


async def test_a_small_match_is_filtered_first(repo: Repository) -> None:
    # A directory: its share is known exactly from the column's statistics (10%), so the
    # planner, assuming matches spread along the filename order, walks that index, and
    # all of /batch7 sorts after 70% of the dataset.
    where, params = compile_filter(parse_filter({"dir": "/batch7"}, defaults=True), start=3)
    base = f"FROM items WHERE project_id = $1 AND dataset_id = $2 AND ({where})"
    order = compile_order_by(parse_sort([{"field": "filename", "order": "asc"}]))

    async def plan(total: int) -> str:
        source = items_module.page_source(base, total)
        rows = await repo.pool.fetch(
            f"EXPLAIN SELECT {ITEM_COLUMNS} {source} {order} LIMIT 100", PROJECT, DATASET, *params
        )
        return "\n".join(r[0] for r in rows)

    matched = ITEMS // 10
    assert "items_dataset_filename_c" in await plan(items_module.FILTER_FIRST_MAX_ROWS + 1)
    assert "items_dataset_filename_c" not in await plan(matched)
