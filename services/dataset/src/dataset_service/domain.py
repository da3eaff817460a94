"""Pure rules of the dataset service: names, directories, content types, metadata.

Nothing here does I/O; the HTTP routes, the ingest handler and the upload client
all go through these functions, so every path into a dataset applies the same rules.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import filetype

from common.errors import ServiceError

MAX_NAME_LENGTH = 255
MAX_DIR_DEPTH = 32

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

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")


class DatasetError(ServiceError):
    """A rule was broken; ``status`` is the HTTP status that reports it."""

    status = 400


class NotFoundError(DatasetError):
    """The thing does not exist in the caller's project (another project's ids too)."""

    status = 404


class ConflictError(DatasetError):
    """The change clashes with existing data."""

    status = 409


class TooLargeError(DatasetError):
    """The upload is over the size limit."""

    status = 413


class UnsupportedTypeError(DatasetError):
    """The content type is not one prelabel stores."""

    status = 415


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


def sniff_mimetype(data: bytes) -> str:
    """The content type of ``data``, from its bytes.

    Binary formats by their signature; otherwise UTF-8 text is ``application/json``
    when it parses as a JSON object or array (prompt items) and ``text/plain`` else.
    """
    kind = filetype.guess(data)
    if kind is not None:
        mime = str(kind.mime)
        if mime in SUPPORTED_TYPES:
            return mime
        raise UnsupportedTypeError(
            f"content type {mime} is not supported; supported: {', '.join(SUPPORTED_TYPES)}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedTypeError(
            "content is neither a supported binary format nor UTF-8 text; "
            f"supported: {', '.join(SUPPORTED_TYPES)}"
        ) from exc
    if "\x00" in text:
        raise UnsupportedTypeError(f"binary content; supported: {', '.join(SUPPORTED_TYPES)}")
    stripped = text.lstrip()
    if stripped[:1] in {"{", "["}:
        try:
            json.loads(text)
        except ValueError:
            return "text/plain"
        return "application/json"
    return "text/plain"


@dataclass(frozen=True)
class BlobFacts:
    """What the service learns from an item's bytes."""

    sha256: str
    size: int
    mimetype: str


def inspect_blob(data: bytes, max_bytes: int) -> BlobFacts:
    """Check size and type of an upload; raise the matching ``DatasetError``."""
    if not data:
        raise DatasetError("file is empty")
    if len(data) > max_bytes:
        raise TooLargeError(f"file is {len(data)} bytes; the limit is {max_bytes} bytes")
    return BlobFacts(hashlib.sha256(data).hexdigest(), len(data), sniff_mimetype(data))


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
