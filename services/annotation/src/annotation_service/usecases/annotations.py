"""Annotations people make, edit and delete (model annotations keep their original)."""

from __future__ import annotations

from typing import Any

import asyncpg

from annotation_service import domain
from annotation_service.domain import ConflictError, NewAnnotation
from annotation_service.domain.events import human_created_event
from annotation_service.repository import Repository


async def create_human_annotation(
    repo: Repository,
    project_id: str,
    item_id: str,
    kind: str,
    label: str,
    coordinates: Any,
    text: str | None,
    author: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> dict[str, Any]:
    """Store an annotation made by a person and announce it."""
    geometry = domain.normalize_geometry(kind, coordinates)
    if conn is None:
        async with repo.pool.acquire() as own, own.transaction():
            return await create_human_annotation(
                repo, project_id, item_id, kind, label, geometry, text, author, conn=own
            )
    dataset_id = await repo.item_dataset(conn, project_id, item_id)
    ann = NewAnnotation(
        id=domain.human_annotation_id(),
        project_id=project_id,
        dataset_id=dataset_id,
        item_id=item_id,
        type=kind,
        label=label,
        coordinates=geometry,
        confidence=None,
        text=text,
        source="human",
        execution_id=None,
        index=None,
        service_id=None,
        model_name=None,
        model_id=None,
        model_version=None,
    )
    view = await repo.insert_human_annotation(conn, ann, author)
    await repo.publish(conn, [human_created_event(ann)])
    return view


async def edit_annotation(
    repo: Repository,
    project_id: str,
    annotation_id: str,
    changes: dict[str, Any],
    editor: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> dict[str, Any]:
    """Change label, type, coordinates or text; the model's original stays as it was."""
    if conn is None:
        async with repo.pool.acquire() as own, own.transaction():
            return await edit_annotation(repo, project_id, annotation_id, changes, editor, conn=own)
    current = await repo.lock_annotation(conn, project_id, annotation_id)
    if current["deleted_at"] is not None:
        raise ConflictError(f"annotation {annotation_id!r} is deleted")
    kind = changes.get("type", current["type"])
    geometry = domain.normalize_geometry(kind, changes.get("coordinates", current["coordinates"]))
    return await repo.update_annotation(
        conn, project_id, annotation_id, kind, geometry, changes, editor
    )


async def delete_annotation(
    repo: Repository,
    project_id: str,
    annotation_id: str,
    editor: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    """Soft-delete: the row (and the model's original) stays for comparison."""
    await repo.soft_delete(conn or repo.pool, project_id, annotation_id, editor)
