"""What commands print: a rich table for people, JSON or YAML for scripts.

JSON and YAML go to stdout as plain text (no colour, no progress, nothing else on
stdout), so ``prelabel ... -o json | jq`` always parses.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
import yaml
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Format(enum.StrEnum):
    """``-o``: how a command prints its data."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format,
    typer.Option(
        "--output",
        "-o",
        help="table (for people), json or yaml (for scripts).",
        case_sensitive=False,
    ),
]

Column = tuple[str, Callable[[Any], Any]]
"""A table column: its header and how to read the cell from a row."""


def jsonable(data: Any) -> Any:
    """Pydantic models, dates and decimals as plain JSON values."""
    return to_jsonable_python(data)


def dump(data: Any, fmt: Format) -> str:
    """``data`` as JSON or YAML text."""
    plain = jsonable(data)
    if fmt is Format.yaml:
        return str(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"


def emit(fmt: Format, data: Any, table: Callable[[], Any] | None = None) -> None:
    """Print ``data``: as ``table()`` renders it, or as JSON/YAML."""
    if fmt is Format.table and table is not None:
        rendered = table()
        if rendered is not None:
            console.print(rendered)
        return
    if fmt is Format.table:
        fmt = Format.yaml  # a shape with no table of its own reads best as YAML
    sys.stdout.write(dump(data, fmt))
    sys.stdout.flush()


def cell(value: Any) -> str:
    """One table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        text = json.dumps(jsonable(value), ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def table(
    title: str, columns: Sequence[Column], rows: Iterable[Any], *, caption: str | None = None
) -> Table:
    """A table of ``rows``, one column per ``(header, getter)``."""
    rendered = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for header, _ in columns:
        rendered.add_column(header, overflow="fold")
    for row in rows:
        rendered.add_row(*(cell(getter(row)) for _, getter in columns))
    return rendered


def fields(title: str, pairs: Sequence[tuple[str, Any]]) -> Table:
    """A two-column table of one object's fields."""
    rendered = Table(title=title, title_justify="left", show_header=False)
    rendered.add_column("field", style="bold")
    rendered.add_column("value", overflow="fold")
    for name, value in pairs:
        rendered.add_row(name, cell(value))
    return rendered


def info(message: str) -> None:
    """A note for people, on stderr (never mixed into JSON/YAML on stdout)."""
    err_console.print(message)
