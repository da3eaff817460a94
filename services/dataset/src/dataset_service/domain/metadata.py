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


MAX_METADATA_BYTES = 64 * 1024
"""Largest user metadata object, as compact JSON in UTF-8 (HTTP upload, PATCH, ingest)."""
MAX_METADATA_DEPTH = 32
"""Deepest nesting of user metadata: the object itself is level 1."""


def metadata_depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (a scalar is 0, ``{}`` 1), counted without recursion
    and only up to ``limit + 1``: deeper is deeper than the limit, however deep."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def check_user_metadata(value: Any) -> dict[str, Any]:
    """User metadata within the limits: a JSON object at most :data:`MAX_METADATA_DEPTH`
    deep and :data:`MAX_METADATA_BYTES` long as JSON. Raises :class:`DatasetError`."""
    if not isinstance(value, dict):
        raise DatasetError(f"metadata must be a JSON object, got {type(value).__name__}")
    if metadata_depth(value, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise DatasetError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"metadata is not JSON: {exc}") from exc
    if size > MAX_METADATA_BYTES:
        raise DatasetError(
            f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes"
        )
    return value


def parse_user_metadata(raw: str | bytes | dict[str, Any] | None) -> dict[str, Any]:
    """User metadata from a form field or a command: a JSON object within the limits
    (:func:`check_user_metadata`)."""
    if raw is None or raw == "" or raw == b"":
        return {}
    if isinstance(raw, dict):
        return check_user_metadata(raw)
    if len(raw) > 4 * MAX_METADATA_BYTES:  # longer than any JSON text of a valid object
        raise DatasetError(
            f"metadata is {len(raw)} long as sent; the limit is {MAX_METADATA_BYTES} bytes"
        )
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise DatasetError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels") from exc
    except ValueError as exc:
        raise DatasetError(f"metadata is not valid JSON: {exc}") from exc
    return check_user_metadata(value)


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
