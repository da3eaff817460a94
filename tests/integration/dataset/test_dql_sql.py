"""The DQL case table through the SQL compiler, on a real PostgreSQL.

Same cases as the in-memory evaluator (tests/unit/common/test_dql.py): the two
must select exactly the same ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
import pytest

from common.dql import (
    PREDICTION_ONLY_IN_EDGES,
    DQLError,
    parse_filter,
    parse_sort,
    parse_timestamp,
)
from dataset_service.repository.dql_sql import compile_filter, compile_order_by
from tests.unit.common.dql_cases import CASES, ITEMS, SORT_CASES, Case, SortCase

# The dataset service's row layout, with the indexes DQL is meant to use. Text
# columns get a linguistic collation where the server has ICU, so the cases that
# compare or sort strings prove the compiler's code-point order does not depend
# on the column's collation.
_DDL = """
CREATE TABLE items (
    id         text PRIMARY KEY,
    dataset_id text        NOT NULL,
    name       text COLLATE_TEXT NOT NULL,
    filename   text COLLATE_TEXT NOT NULL,
    dir        text COLLATE_TEXT NOT NULL,
    type       text        NOT NULL,
    hidden     boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX items_dir ON items (dir COLLATE "C");
CREATE INDEX items_metadata ON items USING gin (metadata jsonb_path_ops);
"""


async def _load_items(pool: asyncpg.Pool) -> None:
    rows = [
        (
            item["id"],
            item["dataset_id"],
            item["name"],
            item["filename"],
            item["dir"],
            item["type"],
            item["hidden"],
            parse_timestamp(item["created_at"]),
            parse_timestamp(item["updated_at"]),
            # Text cast: independent of any jsonb codec the pool registers.
            json.dumps(item["metadata"]),
        )
        for item in ITEMS
    ]
    async with pool.acquire() as conn:
        icu = await conn.fetchval("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'")
        await conn.execute(_DDL.replace("COLLATE_TEXT", 'COLLATE "und-x-icu"' if icu else ""))
        await conn.executemany(
            "INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)",
            rows,
        )


@pytest.fixture
async def items_pool(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    """``pg_pool`` with the sample items loaded into ``items``."""
    await _load_items(pg_pool)
    return pg_pool


async def _select_ids(pool: asyncpg.Pool, filter_: Any, *, defaults: bool) -> set[str]:
    where, params = compile_filter(parse_filter(filter_, defaults=defaults))
    rows = await pool.fetch(f"SELECT id FROM items WHERE {where}", *params)
    return {row["id"] for row in rows}


@pytest.mark.parametrize("case", [c for c in CASES if not c.edge], ids=lambda c: c.name)
async def test_sql_compiler_matches_case_table(items_pool: asyncpg.Pool, case: Case) -> None:
    assert await _select_ids(items_pool, case.filter, defaults=case.defaults) == set(case.expected)


@pytest.mark.parametrize("case", [c for c in CASES if c.edge], ids=lambda c: c.name)
def test_sql_refuses_prediction_fields(case: Case) -> None:
    # Refused when parsed for items (the query API's path) ...
    with pytest.raises(DQLError, match=re.escape(PREDICTION_ONLY_IN_EDGES)):
        parse_filter(case.filter, defaults=case.defaults)
    # ... and by the compiler itself, should an edge condition reach it.
    node = parse_filter(case.filter, defaults=case.defaults, prediction=True)
    with pytest.raises(DQLError, match=re.escape(PREDICTION_ONLY_IN_EDGES)):
        compile_filter(node)


@pytest.mark.parametrize("case", SORT_CASES, ids=lambda c: c.name)
async def test_sort_orders_rows(items_pool: asyncpg.Pool, case: SortCase) -> None:
    where, params = compile_filter(parse_filter(case.filter))
    order_by = compile_order_by(parse_sort(case.sort))
    rows = await items_pool.fetch(f"SELECT id FROM items WHERE {where} {order_by}", *params)
    assert tuple(row["id"] for row in rows) == case.expected


async def test_placeholders_start_where_asked_and_columns_take_an_alias(
    items_pool: asyncpg.Pool,
) -> None:
    node = parse_filter({"metadata.user.label": "cat", "dir": "/batch1/**"}, defaults=True)
    where, params = compile_filter(node, start=2, table="i")
    assert "$1" not in where
    assert "$2" in where
    rows = await items_pool.fetch(
        f"SELECT i.id FROM items AS i WHERE i.dataset_id = $1 AND {where} ORDER BY i.id",
        "ds1",
        *params,
    )
    assert [row["id"] for row in rows] == ["it01"]


def test_values_never_reach_the_sql_text() -> None:
    evil = "x'); DROP TABLE items; --"
    node = parse_filter(
        {
            "name": evil,
            "metadata.user.a": {"$in": [evil, evil + "*"]},
            "metadata.user.b": {"$gt": evil},
            "metadata.user.c.0": evil,
        }
    )
    where, params = compile_filter(node)
    assert "DROP" not in where
    assert any(evil in str(p) for p in params)


async def _plan(pool: asyncpg.Pool, filter_: Any) -> str:
    where, params = compile_filter(parse_filter(filter_))
    async with pool.acquire() as conn, conn.transaction():
        # Eight rows would always be a sequential scan; ask whether the index *can* serve.
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(f"EXPLAIN SELECT id FROM items WHERE {where}", *params)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    "filter_",
    [
        {"metadata.system.mimetype": "image/png"},
        {"metadata.system.mimetype": {"$in": ["image/png", "image/jpeg"]}},
        {"metadata.user.info.rank": 2},
        {"metadata.user.tags": "a"},
        {"metadata.user.nums": {"$in": [1, 20]}},
    ],
    ids=["eq", "in", "nested_number", "array_eq", "array_in"],
)
async def test_metadata_equality_can_use_the_gin_index(
    items_pool: asyncpg.Pool, filter_: Any
) -> None:
    assert "items_metadata" in await _plan(items_pool, filter_)


async def test_dir_glob_can_use_a_c_collated_index(items_pool: asyncpg.Pool) -> None:
    plan = await _plan(items_pool, {"dir": "/batch1/**"})
    # The anchored regex's literal prefix becomes a range on the leading-dir index.
    assert "items_dir" in plan
    assert ">=" in plan
