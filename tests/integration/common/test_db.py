from pathlib import Path

import asyncpg

from common.db import apply_migrations


async def test_migrations_apply_in_order_once(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0002_add.sql").write_text("ALTER TABLE widgets ADD COLUMN size int;")
    (tmp_path / "0001_create.sql").write_text("CREATE TABLE widgets (id text PRIMARY KEY);")

    first = await apply_migrations(pg_pool, pg_schema, tmp_path)
    second = await apply_migrations(pg_pool, pg_schema, tmp_path)

    assert first == ["0001_create.sql", "0002_add.sql"]
    assert second == []
    async with pg_pool.acquire() as conn:
        await conn.execute("INSERT INTO widgets (id, size) VALUES ('a', 3)")
        assert await conn.fetchval("SELECT size FROM widgets WHERE id = 'a'") == 3


async def test_jsonb_round_trips_as_python_objects(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        value = await conn.fetchval("SELECT $1::jsonb", {"a": [1, 2, {"b": None}]})
    assert value == {"a": [1, 2, {"b": None}]}
