"""Entity ids: ``<prefix>_<hex>``, e.g. ``ds_3f2a...`` (one definition for every service)."""

from __future__ import annotations

import uuid


def new_id(prefix: str, *, hex_chars: int = 32) -> str:
    """A new random id: ``prefix``, an underscore and ``hex_chars`` hex digits of a UUID4."""
    if not 1 <= hex_chars <= 32:
        raise ValueError(f"hex_chars must be 1..32, got {hex_chars}")
    return f"{prefix}_{uuid.uuid4().hex[:hex_chars]}"
