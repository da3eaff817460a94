"""DQL queries over a dataset's items: the filter and sort checked, the page bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.contracts import ItemSnapshot
from common.dql import DQLError, Node, SortKey, parse_filter, parse_sort
from dataset_service.domain import DatasetError
from dataset_service.repository import Repository

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

    @property
    def has_next(self) -> bool:
        """Whether a page follows."""
        return (self.page + 1) * self.page_size < self.total_count


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
) -> Page:
    """One page of the dataset's items matching the filter, sorted."""
    await repo.dataset_exists(project_id, dataset_id)
    if page_size > max_page_size:
        raise DatasetError(f"page_size {page_size} is over the maximum {max_page_size}")
    node, keys = parse_query(filter_, sort, max_depth=max_depth)
    found, total = await repo.query_items(project_id, dataset_id, node, keys, page, page_size)
    return Page(found, total, page, page_size)
