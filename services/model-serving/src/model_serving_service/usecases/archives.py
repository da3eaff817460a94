"""Model archives: unpacking an upload safely, and the spec form that comes with it."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from model_serving_service.domain.archives import safe_member
from model_serving_service.domain.errors import (
    InvalidModelError,
    TooLargeError,
)

MAX_ARCHIVE_FILES = 10_000


def unpack_archive(archive: bytes, max_unpacked: int) -> dict[PurePosixPath, bytes]:
    """Files of a ``.tar``, ``.tar.gz`` or ``.zip`` archive, checked for unsafe entries."""
    out: dict[PurePosixPath, bytes] = {}
    total = 0

    def add(name: str, read: Callable[[], bytes], size: int) -> None:
        nonlocal total
        if name.startswith("__MACOSX/"):
            return
        path = safe_member(name)
        if path is None:
            raise InvalidModelError([f"unsafe path in archive: {name!r}"])
        total += size
        if total > max_unpacked:
            raise TooLargeError(f"the archive unpacks to more than {max_unpacked} bytes")
        if len(out) >= MAX_ARCHIVE_FILES:
            raise InvalidModelError([f"the archive has more than {MAX_ARCHIVE_FILES} files"])
        out[path] = read()

    if archive[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise InvalidModelError([f"symbolic link in archive: {info.filename!r}"])
                    add(info.filename, lambda info=info: zf.read(info), info.file_size)  # type: ignore[misc]
        except zipfile.BadZipFile as exc:
            raise InvalidModelError([f"the zip archive is damaged: {exc}"]) from exc
        return out
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tf:
            for member in tf:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidModelError(
                        [
                            f"archive entry {member.name!r} is not a regular file (links and "
                            "devices are refused)"
                        ]
                    )
                handle = tf.extractfile(member)
                assert handle is not None
                add(member.name, handle.read, member.size)
    except tarfile.TarError as exc:
        raise InvalidModelError(
            [f"the upload is neither a zip nor a tar(.gz) archive of a model directory: {exc}"]
        ) from exc
    return out


def parse_spec_form(raw: str) -> dict[str, Any]:
    """The ``spec`` form field: a JSON object."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidModelError([f"spec is not JSON: {exc}"]) from exc
    if not isinstance(doc, dict):
        raise InvalidModelError(["spec must be a JSON object"])
    return doc
