"""DQL queries over a dataset's items: the filter and sort checked, the page bounded;
keyset cursors; directory listings.

Pages are sought by keyset where the sort allows it (item columns: the default sort by
``filename`` does): the first page and every page reached with a cursor cost the same,
however deep, since PostgreSQL seeks to the cursor's sort values on an index instead of
counting past ``page * page_size`` rows. A cursor is opaque to clients: base64url of the
sort it belongs to, the direction and the sort values of the item it follows (or
precedes). ``page`` numbers still work, as OFFSET, for metadata sorts and old clients.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.contracts import ItemSnapshot
from common.dql import DQLError, Node, SortKey, parse_filter, parse_sort
from dataset_service.domain import DatasetError, normalize_dir
from dataset_service.repository import DirectoryListing, Repository
from dataset_service.repository.dql_sql import keyset_keys

DEFAULT_SORT: list[dict[str, Any]] = [{"field": "filename", "order": "asc"}]


class InvalidFilterError(DatasetError):
    """A DQL filter or sort spec is invalid; the answer says what and where."""

    def __init__(self, exc: DQLError) -> None:
        super().__init__(exc.message)
        self.path = exc.path

    def body(self) -> dict[str, object]:
        """``{"detail": {"error", "message", "path"}}``."""
        return {"detail": {"error": "invalid filter", "message": self.message, "path": self.path}}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query's items and the total count."""

    items: list[ItemSnapshot]
    total_count: int
    page: int
    page_size: int
    has_next: bool
    next_cursor: str | None = None
    """Where the page after this one starts (``None``: none follows, or the sort is by
    metadata)."""
    prev_cursor: str | None = None
    """Where the page before this one ends (``None`` on the first page)."""


class InvalidCursorError(DatasetError):
    """A cursor that this service did not make, or made for another sort."""


def _signature(keys: tuple[SortKey, ...]) -> str:
    return ",".join(("-" if k.descending else "") + ".".join(k.field.segments) for k in keys)


def _value(item: ItemSnapshot, key: SortKey) -> Any:
    value = getattr(item, key.field.column)
    return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(keys: tuple[SortKey, ...], item: ItemSnapshot, *, backwards: bool) -> str:
    """The cursor of the page after ``item`` (before it, when ``backwards``)."""
    body = {"s": _signature(keys), "b": backwards, "v": [_value(item, k) for k in keys]}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, keys: tuple[SortKey, ...]) -> tuple[list[Any], bool]:
    """``(sort values, backwards)`` of a cursor made for ``keys``; ``InvalidCursorError``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError("cursor is not one this service made") from exc
    if not isinstance(body, dict) or not isinstance(body.get("v"), list):
        raise InvalidCursorError("cursor is not one this service made")
    if body.get("s") != _signature(keys):
        raise InvalidCursorError(
            "cursor belongs to another sort: ask the first page again for this sort"
        )
    values: list[Any] = []
    for key, value in zip(keys, body["v"], strict=False):
        kind = key.field.kind.value
        if kind == "timestamp":
            try:
                values.append(datetime.fromisoformat(value))
            except (TypeError, ValueError) as exc:
                raise InvalidCursorError("cursor is not one this service made") from exc
        elif (kind == "bool" and isinstance(value, bool)) or (
            kind == "text" and isinstance(value, str)
        ):
            values.append(value)
        else:
            raise InvalidCursorError("cursor is not one this service made")
    if len(values) != len(keys):
        raise InvalidCursorError("cursor is not one this service made")
    return values, bool(body.get("b"))


def parse_query(filter_: Any, sort: Any, *, max_depth: int) -> tuple[Node, tuple[SortKey, ...]]:
    """The filter (with Dataloop's defaults) and sort keys; ``InvalidFilterError`` if bad."""
    try:
        node = parse_filter(filter_, max_depth=max_depth, defaults=True)
        keys = parse_sort(sort or DEFAULT_SORT, "/sort")
    except DQLError as exc:
        raise InvalidFilterError(exc) from exc
    return node, keys


async def query_items(
    repo: Repository,
    project_id: str,
    dataset_id: str,
    *,
    filter_: Any,
    sort: Any,
    page: int,
    page_size: int,
    max_page_size: int,
    max_depth: int,
    cursor: str | None = None,
) -> Page:
    """One page of the dataset's items matching the filter, sorted: after (or before)
    ``cursor``, else page number ``page``."""
    await repo.dataset_exists(project_id, dataset_id)
    if page_size > max_page_size:
        raise DatasetError(f"page_size {page_size} is over the maximum {max_page_size}")
    node, keys = parse_query(filter_, sort, max_depth=max_depth)
    try:
        seekable = keyset_keys(keys)
    except DQLError as exc:
        if cursor is not None:
            raise InvalidFilterError(exc) from exc
        seekable = None
    if cursor is not None and page:
        raise DatasetError("give either cursor or page, not both")
    if seekable is None:
        found, total = await repo.query_items(project_id, dataset_id, node, keys, page, page_size)
        has_next = (page + 1) * page_size < total
        return Page(found, total, page, page_size, has_next)
    if page and cursor is None:
        # A page by number: OFFSET, as before; its cursors lead on by keyset.
        found, total = await repo.query_items(project_id, dataset_id, node, keys, page, page_size)
        has_next = (page + 1) * page_size < total
        return _with_cursors(seekable, found, total, page, page_size, has_next, has_prev=True)
    after, backwards = decode_cursor(cursor, seekable) if cursor is not None else (None, False)
    found, more, total = await repo.seek_items(
        project_id, dataset_id, node, keys, page_size, after, backwards=backwards
    )
    if backwards and not more:
        # Back at the start: the first page, full, rather than what is left before.
        found, more, total = await repo.seek_items(project_id, dataset_id, node, keys, page_size)
        return _with_cursors(seekable, found, total, 0, page_size, more, has_prev=False)
    if backwards:
        return _with_cursors(seekable, found, total, page, page_size, True, has_prev=True)
    return _with_cursors(seekable, found, total, page, page_size, more, has_prev=cursor is not None)


def _with_cursors(
    keys: tuple[SortKey, ...],
    found: list[ItemSnapshot],
    total: int,
    page: int,
    page_size: int,
    has_next: bool,
    *,
    has_prev: bool,
) -> Page:
    next_cursor = encode_cursor(keys, found[-1], backwards=False) if has_next and found else None
    prev_cursor = encode_cursor(keys, found[0], backwards=True) if has_prev and found else None
    return Page(found, total, page, page_size, has_next, next_cursor, prev_cursor)


async def list_directories(
    repo: Repository, project_id: str, dataset_id: str, *, parent: str, limit: int
) -> DirectoryListing:
    """The subdirectories of ``parent`` with their item counts."""
    await repo.dataset_exists(project_id, dataset_id)
    return await repo.list_directories(dataset_id, normalize_dir(parent), limit)
