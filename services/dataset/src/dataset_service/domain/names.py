"""Names and directories inside a dataset: what a client sends becomes a safe name,
a canonical directory and the item's full path."""

from __future__ import annotations

import re
import unicodedata

from dataset_service.domain.errors import DatasetError

MAX_NAME_LENGTH = 255
MAX_DIR_DEPTH = 32

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")


def sanitize_name(raw: str) -> str:
    """A safe file name: no directory parts, no ``..``, no control characters.

    ``"../../etc/passwd"`` becomes ``"passwd"``; ``"a\\x00b.png"`` becomes ``"ab.png"``.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").split("/")[-1]
    name = _SPACE_RE.sub(" ", _CONTROL_RE.sub("", name)).strip()
    name = name.lstrip(".") if set(name) <= {"."} else name
    if not name or name in {".", ".."}:
        raise DatasetError(f"file name {raw!r} is empty once unsafe characters are removed")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: MAX_NAME_LENGTH - len(ext) - 1] + dot + ext) if dot else name[:MAX_NAME_LENGTH]
        )
    return name


def normalize_dir(raw: str | None) -> str:
    """A canonical remote directory: ``"batch1/x/"`` -> ``"/batch1/x"``, ``""`` -> ``"/"``.

    ``..`` and ``.`` segments and control characters are removed rather than resolved,
    so no directory can climb above the dataset root.
    """
    if raw is None:
        return "/"
    parts = []
    for part in unicodedata.normalize("NFC", raw).replace("\\", "/").split("/"):
        clean = _SPACE_RE.sub(" ", _CONTROL_RE.sub("", part)).strip()
        if clean and clean not in {".", ".."}:
            parts.append(clean[:MAX_NAME_LENGTH])
    if len(parts) > MAX_DIR_DEPTH:
        raise DatasetError(f"directory {raw!r} is deeper than {MAX_DIR_DEPTH} levels")
    return "/" + "/".join(parts)


def join_filename(directory: str, name: str) -> str:
    """The item's full path inside its dataset."""
    return f"/{name}" if directory == "/" else f"{directory}/{name}"
