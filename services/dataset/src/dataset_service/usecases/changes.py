"""Changes to an item: which fields a patch may touch, cleaned by the domain rules."""

from __future__ import annotations

from typing import Any

from common.contracts import ItemSnapshot
from dataset_service.domain import (
    DatasetError,
    check_user_metadata,
    normalize_dir,
    sanitize_name,
)
from dataset_service.repository import Repository


def user_metadata_of(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """The new ``metadata.user`` of a patch (``{"user": {...}}``), or ``None`` to keep it."""
    if metadata is None:
        return None
    extra = set(metadata) - {"user"}
    if extra:
        raise DatasetError(f"only metadata.user can be changed, not {sorted(extra)}")
    user = metadata.get("user")
    if not isinstance(user, dict):
        raise DatasetError("metadata.user must be a JSON object")
    return check_user_metadata(user)


async def update_item(
    repo: Repository,
    project_id: str,
    item_id: str,
    *,
    name: str | None,
    directory: str | None,
    hidden: bool | None,
    metadata: dict[str, Any] | None,
) -> ItemSnapshot:
    """Change name, dir, hidden or user metadata; ``None`` leaves a field as it is."""
    user_metadata = user_metadata_of(metadata)
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = sanitize_name(name)
    if directory is not None:
        fields["dir"] = normalize_dir(directory)
    if hidden is not None:
        fields["hidden"] = hidden
    return await repo.update_item(project_id, item_id, user_metadata=user_metadata, fields=fields)
