"""Small helpers on the servers the benchmarks share: a queue's depth, item rows by COPY."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import aio_pika
import asyncpg

ITEM_COLUMNS = ["id", "project_id", "dataset_id", "name", "filename", "dir", "metadata"]
"""The columns of the rows :func:`copy_items` takes, in order (``metadata`` as JSON text)."""


async def queue_depth(amqp_url: str, queue: str) -> int:
    """How many messages ``queue`` holds now (on a connection of its own)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def copy_items(conn: asyncpg.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert dataset item rows (:data:`ITEM_COLUMNS`) into ``items`` with one COPY."""
    # COPY in CSV: binary COPY has no encoder for the text-codec'd jsonb.
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    await conn.copy_to_table(
        "items", source=io.BytesIO(buffer.getvalue().encode()), format="csv", columns=ITEM_COLUMNS
    )
