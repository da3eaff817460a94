"""PostgreSQL access: pools bound to a service schema and ordered migrations.

Each service owns one schema (``dataset``, ``billing`` ...). Migrations are plain
``NNNN_name.sql`` files applied in order at start-up inside one transaction each,
recorded in ``<schema>.schema_migrations``; an advisory lock keeps two replicas
starting at once from applying the same file twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a safe unquoted identifier, else raise ``ValueError``."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits and _")
    return schema


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release connections to the pool as they are."""


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """Create the schema if needed and return a pool whose connections use it.

    JSON and JSONB columns are encoded and decoded as Python objects.
    """
    check_schema_name(schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    finally:
        await conn.close()

    # A startup parameter, not a SET: a RESET ALL would undo a SET. Connections are
    # not reset on release (a round trip per query): nothing here changes session
    # state, and session advisory locks live on dedicated connections.
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_reset,
        server_settings={**(server_settings or {}), "search_path": f"{schema}, public"},
    )
    assert pool is not None
    return pool


def _lock_key(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True
    )


async def apply_migrations(pool: asyncpg.Pool, schema: str, *directories: Path) -> list[str]:
    """Apply every ``*.sql`` file of ``directories`` not applied yet, in name order.

    Files from several directories are merged and sorted by file name, so libs/common's
    own tables (the outbox, the dedup table) come first with ``0000_`` names. Returns the
    names applied by this call.
    """
    check_schema_name(schema)
    files = sorted((p for d in directories for p in d.glob("*.sql")), key=lambda p: p.name)
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    name text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"] for r in await conn.fetch(f"SELECT name FROM {schema}.schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            log.info("applying migration", extra={"migration": path.name, "schema": schema})
            await conn.execute(path.read_text())
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (name) VALUES ($1)", path.name
            )
            applied.append(path.name)
    return applied


async def fetch_one(pool: asyncpg.Pool, query: str, *args: Any) -> asyncpg.Record | None:
    """Run ``query`` and return its first row, or ``None``."""
    async with pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(query, *args)
        return row
