"""What every part of the repository shares: the pool, the events exchange, the outbox
write that goes with a state change, and the views of stored rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from common.outbox import OutboxEvent, enqueue_many
from common.topology import ANNOTATION, Topology

ANNOTATION_COLUMNS = """id, project_id, dataset_id, item_id, type, label, coordinates, confidence,
    text, source, execution_id, idx, service_id, model_name, model_id, model_version, original,
    created_at, created_by, modified_at, modified_by, deleted_at, deleted_by, origin_way,
    origin_id, origin_pipeline_execution_id, origin_node_id"""

Executor = asyncpg.Connection | asyncpg.Pool


@dataclass
class Store:
    """The connection pool and the exchange each part of the repository works with."""

    pool: asyncpg.Pool
    topology: Topology

    @property
    def exchange(self) -> str:
        """The annotation service's events exchange."""
        return self.topology.events_exchange(ANNOTATION)

    async def publish(self, conn: asyncpg.Connection, events: Iterable[OutboxEvent]) -> None:
        """Write ``events`` to the outbox in the caller's transaction (ordered by id, so
        concurrent writers lock the outbox's index entries in one order)."""
        await enqueue_many(conn, sorted(events, key=_event_id), self.exchange)


def _event_id(event: OutboxEvent) -> str:
    return event.id


def record(row: asyncpg.Record) -> dict[str, Any]:
    """A row as a plain dict."""
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
        "origin": _origin(row),
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


def _origin(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any] | None:
    # Which way (trigger, batch, pipeline) produced a model annotation, when known.
    if row["origin_way"] is None:
        return None
    return {
        "way": row["origin_way"],
        "id": row["origin_id"],
        "pipeline_execution_id": row["origin_pipeline_execution_id"],
        "node_id": row["origin_node_id"],
    }


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


def task_item_view(row: asyncpg.Record) -> dict[str, Any]:
    """A task item as the API shows it (with the item's facts when the row has them)."""
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
        "service_id": row["service_id"],
        "reviewer": row["reviewer"],
        "reviewed_at": row["reviewed_at"],
        "auto_accepted": row["auto_accepted"],
        "pipeline_id": row["pipeline_id"],
        "pipeline_execution_id": row["pipeline_execution_id"],
        "node_id": row["node_id"],
    }
    if "filename" in keys:
        view["item"] = {"filename": row["filename"], "width": row["width"], "height": row["height"]}
    return view
