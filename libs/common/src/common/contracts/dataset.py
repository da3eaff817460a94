"""Contracts published or owned by the dataset service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.topology import DATASET


class ItemSnapshot(BaseModel):
    """Everything a trigger filter may look at, as the item was when the event happened."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    id: str
    """Item id."""
    project_id: str
    """Owning project."""
    dataset_id: str
    """Dataset the item belongs to."""
    name: str
    """File name without directory."""
    filename: str
    """Full path inside the dataset: ``dir`` + ``/`` + ``name``."""
    dir: str
    """Remote directory, e.g. ``/batch1``."""
    type: Literal["file", "dir"] = "file"
    """``file`` or ``dir``."""
    hidden: bool = False
    """Hidden items are skipped by default filters."""
    created_at: datetime
    """Creation time (UTC)."""
    updated_at: datetime
    """Last change (UTC)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """``system`` (mimetype, size, width, height, sha256, blob key) and ``user`` metadata."""

    def as_filter_document(self) -> dict[str, Any]:
        """The item as the DQL in-memory evaluator sees it."""
        return self.model_dump(mode="json")


class ItemCreated(Contract):
    """An item was added to a dataset (upload or ingest)."""

    routing_key = "item.created.v1"
    producer = DATASET

    item: ItemSnapshot
    """The new item."""


class ItemUpdated(Contract):
    """An item changed other than its user metadata (name, dir, hidden ...)."""

    routing_key = "item.updated.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item after the change."""
    changed: list[str] = Field(default_factory=list)
    """Names of the fields that changed."""


class ItemMetadataUpdated(Contract):
    """An item's user metadata changed."""

    routing_key = "item.metadata_updated.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item after the change."""
    previous_user_metadata: dict[str, Any] = Field(default_factory=dict)
    """``metadata.user`` before the change."""


class ItemDeleted(Contract):
    """An item was deleted."""

    routing_key = "item.deleted.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item as it was before deletion."""


class IngestItem(Contract):
    """Command from an upload client: register a blob that is already in the bucket."""

    routing_key = "ingest_item.v1"
    producer = DATASET
    kind = "command"

    dataset_id: str = Field(min_length=1)
    """Target dataset."""
    s3_key: str = Field(min_length=1)
    """Key of the uploaded blob in the service's bucket."""
    name: str = Field(min_length=1)
    """File name."""
    dir: str = "/"
    """Remote directory."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """User metadata (a JSON object)."""
