"""Request and answer bodies of the HTTP API (items are ``common.contracts.ItemSnapshot``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.contracts import ItemSnapshot
from dataset_service.domain import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_NAME_LENGTH

METADATA_LIMITS = (
    f"User metadata is a JSON object at most {MAX_METADATA_DEPTH} levels deep and "
    f"{MAX_METADATA_BYTES} bytes as compact JSON (400 otherwise)."
)
NAME_LIMIT = f"At most {MAX_NAME_LENGTH} characters (400 otherwise; never cut)."


class ProjectIn(BaseModel):
    """A new project."""

    name: str = Field(min_length=1, max_length=200)


class KeyIn(BaseModel):
    """A new API key."""

    name: str = Field(default="default", min_length=1, max_length=200)


class DatasetIn(BaseModel):
    """A new dataset."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class ItemPatch(BaseModel):
    """A change to an item; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description=f"New file name. {NAME_LIMIT}")
    dir: str | None = None
    hidden: bool | None = None
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Only ``metadata.user`` may change: {{'user': {{...}}}}. {METADATA_LIMITS}",
    )


class ItemQuery(BaseModel):
    """A DQL query over a dataset's items."""

    filter: dict[str, Any] = Field(default_factory=dict)
    sort: list[dict[str, Any]] | dict[str, Any] | None = None
    page: int = Field(
        default=0,
        ge=0,
        description="Page number (OFFSET paging); prefer ``cursor``, which costs the same at any depth.",
    )
    page_size: int = Field(default=100, ge=1)
    cursor: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "A page's ``next_cursor`` or ``prev_cursor``: the page after (before) it, sought "
            "by keyset. Sorts by item columns only; not with ``page``."
        ),
    )


class ItemPage(BaseModel):
    """One page of items."""

    items: list[ItemSnapshot]
    total_count: int
    page: int
    page_size: int
    has_next: bool
    next_cursor: str | None = Field(
        default=None, description="Cursor of the next page (none when no page follows)."
    )
    prev_cursor: str | None = Field(
        default=None, description="Cursor of the previous page (none on the first page)."
    )


class WhoAmI(BaseModel):
    """The project a key belongs to."""

    project_id: str
