"""Item metadata: the user part a client sends, the system part the service records,
and the content types an item may have."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dataset_service.domain.errors import DatasetError

SUPPORTED_TYPES: tuple[str, ...] = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "text/plain",
    "application/json",
)
"""Content types an item may have; decided by sniffing the bytes, never by the client."""


def parse_user_metadata(raw: str | bytes | dict[str, Any] | None) -> dict[str, Any]:
    """User metadata from a form field or a command: it must be a JSON object."""
    if raw is None or raw == "" or raw == b"":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise DatasetError(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"metadata must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class BlobFacts:
    """What the service learns from an item's bytes."""

    sha256: str
    size: int
    mimetype: str


def system_metadata(
    facts: BlobFacts, blob_key: str, width: int | None, height: int | None
) -> dict[str, Any]:
    """``metadata.system`` of a new item."""
    system: dict[str, Any] = {
        "mimetype": facts.mimetype,
        "size": facts.size,
        "sha256": facts.sha256,
        "blob_key": blob_key,
    }
    if width is not None and height is not None:
        system.update(width=width, height=height)
    return system
