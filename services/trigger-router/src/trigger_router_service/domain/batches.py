"""Batches: browser-style predict requests and their progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Batch(BaseModel):
    """A browser-style predict request: its executions' progress by status."""

    id: str
    project_id: str
    service_id: str
    selection: dict[str, Any]
    """What picked the items (ids, or a dataset and a DQL filter)."""
    item_count: int
    created_at: datetime
    force: bool = False
    """Whether items this model version already predicted were predicted again."""
    counts: dict[str, int]
    """Executions per status, and ``skipped``: picked items this model version had
    already predicted successfully, left out (no execution) because ``force`` was off."""
    finished: int
    """Executions in a final status (success, failed, cancelled), plus the skipped items."""
    progress: float
    """``finished / item_count`` (1.0 for an empty batch)."""
