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
    A name longer than :data:`MAX_NAME_LENGTH` characters is refused, never cut.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").split("/")[-1]
    name = _SPACE_RE.sub(" ", _CONTROL_RE.sub("", name)).strip()
    name = name.lstrip(".") if set(name) <= {"."} else name
    if not name or name in {".", ".."}:
        raise DatasetError(f"file name {raw!r} is empty once unsafe characters are removed")
    if len(name) > MAX_NAME_LENGTH:
        raise DatasetError(
            f"file name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    return name


def normalize_dir(raw: str | None) -> str:
    """A canonical remote directory: ``"batch1/x/"`` -> ``"/batch1/x"``, ``""`` -> ``"/"``.

    ``..`` and ``.`` segments and control characters are removed rather than resolved,
    so no directory can climb above the dataset root. A segment longer than
    :data:`MAX_NAME_LENGTH` characters is refused, never cut.
    """
    if raw is None:
        return "/"
    parts = []
    for part in unicodedata.normalize("NFC", raw).replace("\\", "/").split("/"):
        clean = _SPACE_RE.sub(" ", _CONTROL_RE.sub("", part)).strip()
        if len(clean) > MAX_NAME_LENGTH:
            raise DatasetError(
                f"a directory name is {len(clean)} characters long; the limit is {MAX_NAME_LENGTH}"
            )
        if clean and clean not in {".", ".."}:
            parts.append(clean)
    if len(parts) > MAX_DIR_DEPTH:
        raise DatasetError(f"directory {raw!r} is deeper than {MAX_DIR_DEPTH} levels")
    return "/" + "/".join(parts)


def join_filename(directory: str, name: str) -> str:
    """The item's full path inside its dataset."""
    return f"/{name}" if directory == "/" else f"{directory}/{name}"


MAX_KEY_BYTES = 1024
"""Longest S3 key an ingest command may name (S3's own limit), in UTF-8 bytes."""


def check_blob_key(raw: str) -> str:
    """The S3 key of an ingest command, if it names an object inside the bucket.

    Keys are taken as they are, never resolved: a key must already be normalised
    (relative, ``/``-separated, no empty, ``.`` or ``..`` segment, no backslash or control
    character, Unicode NFC), so no key can climb out of the bucket (``../other/key``)
    or name another object than the one it spells. Raises :class:`DatasetError`.
    """
    problem = None
    if not raw:
        problem = "is empty"
    elif len(raw.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    elif _CONTROL_RE.search(raw) or "\\" in raw:
        problem = "contains a control character or a backslash"
    elif raw.startswith("/"):
        problem = "is absolute (starts with '/'); keys are relative to the bucket"
    elif any(part in {"", ".", ".."} for part in raw.split("/")):
        problem = "has an empty, '.' or '..' segment; keys must stay inside the bucket"
    elif unicodedata.normalize("NFC", raw) != raw:
        problem = "is not in Unicode NFC form"
    if problem is not None:
        raise DatasetError(f"s3_key {raw[:200]!r} {problem}")
    return raw
