"""What to upload where: local paths to remote directories, metadata, dedup queries.

Pure functions (plus the directory walk), so the rules are unit-tested without
a server. Remote directories follow the dataset service's rules
(``dataset_service.domain.normalize_dir``): the client must compute the same
directory the service will store, or its "already uploaded" check would look in
the wrong place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prelabel_client.errors import ClientError

T = TypeVar("T")

DEDUP_CHUNK = 1000
"""Most hashes in one "already uploaded?" query (the service's largest page)."""

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")
_GLOB_CHARS_RE = re.compile(r"([\\*?])")


@dataclass(frozen=True)
class LocalFile:
    """One file to upload and where it goes."""

    path: Path
    """The local file."""
    remote_dir: str
    """Normalised remote directory, e.g. ``/batch1/cats``."""
    size: int
    """Size in bytes when it was found."""

    @property
    def name(self) -> str:
        """The remote name (the service sanitises it further if it must)."""
        return self.path.name


def normalize_dir(raw: str) -> str:
    """A canonical remote directory, as the service stores it.

    ``"batch1/x/"`` -> ``"/batch1/x"``; ``""`` -> ``"/"``; ``.`` and ``..`` segments and
    control characters are dropped, never resolved.
    """
    parts = []
    for part in unicodedata.normalize("NFC", raw).replace("\\", "/").split("/"):
        clean = _SPACE_RE.sub(" ", _CONTROL_RE.sub("", part)).strip()
        if clean and clean not in {".", ".."}:
            parts.append(clean)
    return "/" + "/".join(parts)


def remote_dir_for(base_dir: str, relative_parent: Path | str) -> str:
    """The remote directory of a file found in ``relative_parent`` below an uploaded folder.

    The folder's own name is not part of it (like Dataloop): uploading ``photos/``
    with ``photos/cats/a.jpg`` to ``/batch1`` stores ``/batch1/cats/a.jpg``.
    """
    relative = Path(relative_parent).as_posix()
    if relative in {"", "."}:
        return normalize_dir(base_dir)
    return normalize_dir(f"{base_dir}/{relative}")


def collect_files(paths: Sequence[Path], remote_dir: str = "/") -> list[LocalFile]:
    """Every file to upload: files as given, folders walked recursively (sorted).

    Raises ``ClientError`` naming the paths that do not exist. A file reached
    twice (given twice, or inside a folder also given) is uploaded once.
    """
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise ClientError(f"no such file or folder: {', '.join(missing)}")
    found: list[LocalFile] = []
    seen: set[Path] = set()

    def add(path: Path, directory: str) -> None:
        resolved = path.resolve()
        if resolved not in seen and path.is_file():
            seen.add(resolved)
            found.append(LocalFile(path, directory, path.stat().st_size))

    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                parent = Path(root)
                directory = remote_dir_for(remote_dir, parent.relative_to(path))
                for name in sorted(names):
                    add(parent / name, directory)
        else:
            add(path, normalize_dir(remote_dir))
    return found


def parse_metadata(text: str | None) -> dict[str, Any]:
    """User metadata from ``--metadata``: it must be a JSON object."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"--metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ClientError(
            f'--metadata must be a JSON object like \'{{"camera": "x"}}\', '
            f"got a JSON {type(value).__name__}"
        )
    return value


def parse_filter(text: str | None) -> dict[str, Any]:
    """A DQL filter from ``--filter``: a JSON object (the service checks the rest)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"--filter is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ClientError(f"--filter must be a JSON object, got a JSON {type(value).__name__}")
    return value


def dql_literal(value: str) -> str:
    """``value`` as a DQL operand that matches itself only.

    DQL reads a string with ``*`` or ``?`` as a glob; escaping those (and the
    backslash) keeps a directory such as ``/a*b`` literal.
    """
    if "*" not in value and "?" not in value:
        return value
    return _GLOB_CHARS_RE.sub(r"\\\1", value)


def existing_content_filter(remote_dir: str, sha256s: Sequence[str]) -> dict[str, Any]:
    """DQL for items in ``remote_dir`` holding any of these contents (hidden ones too)."""
    return {
        "dir": dql_literal(remote_dir),
        "metadata.system.sha256": {"$in": list(sha256s)},
        "hidden": {"$in": [True, False]},
    }


def chunked(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def sha256_of(path: Path, block: int = 1024 * 1024) -> str:
    """The file's SHA-256 (hex), read in blocks so big files need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
