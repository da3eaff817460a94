"""What the dataset service answers, as the client reads it (unknown fields ignored)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from common.contracts import ItemSnapshot

Item = ItemSnapshot
"""An item; the same model the item events carry."""


class Dataset(BaseModel):
    """A dataset of the caller's project."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    project_id: str
    name: str
    description: str = ""
    created_at: datetime
    item_count: int = 0


class ItemPage(BaseModel):
    """One page of a DQL query."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    items: list[Item]
    total_count: int
    page: int
    page_size: int
    has_next: bool
