"""Archive safety: which member paths of an uploaded model archive may be unpacked."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from model_serving_service.domain.errors import InvalidModelError


def safe_member(name: str) -> PurePosixPath | None:
    """A relative archive path without ``..`` or absolute parts; None for unsafe names."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part in {"..", ""} for part in path.parts):
        return None
    parts = [p for p in path.parts if p != "."]
    if not parts:
        return None
    return PurePosixPath(*parts)


def model_root(paths: Iterable[PurePosixPath]) -> PurePosixPath:
    """The folder of an archive holding ``config.pbtxt``: the root or one top folder."""
    configs = [p for p in paths if p.name == "config.pbtxt" and len(p.parts) <= 2]
    if len(configs) != 1:
        found = ", ".join(sorted(str(c) for c in configs)) or "none"
        raise InvalidModelError(
            [
                f"the archive must hold exactly one config.pbtxt at its root or in one "
                f"top-level folder (found: {found})"
            ]
        )
    return configs[0].parent


def version_folders(paths: Iterable[PurePosixPath]) -> list[int]:
    """Numeric version folders (``1/``, ``2/``) among paths relative to the model root."""
    versions = {int(p.parts[0]) for p in paths if len(p.parts) >= 2 and p.parts[0].isdigit()}
    return sorted(versions)
