"""The status table on a rich console."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from prelabel_stack.config import REPO_ROOT

if TYPE_CHECKING:
    from prelabel_stack.components.base import Row

# Off a terminal (make, CI logs) rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def render(rows: Sequence[Row], title: str) -> None:
    """Print the rows as a rich table."""
    table = Table(title=title)
    for column in ("component", "URL", "status", "pid", "log"):
        table.add_column(column, overflow="fold")
    for row in rows:
        colour = "green" if row.ok else "red"
        log = "-"
        if row.log is not None and row.log.exists():
            log = str(row.log)
            with contextlib.suppress(ValueError):
                log = str(row.log.relative_to(REPO_ROOT))
        table.add_row(
            row.component,
            row.url,
            f"[{colour}]{row.status}[/]",
            str(row.pid) if row.pid else "-",
            log,
        )
    console.print(table)
