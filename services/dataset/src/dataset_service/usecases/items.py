"""The ways an item enters a dataset, shared by the HTTP upload and the ingest command.

Order matters for "bad input loses nothing and leaves nothing behind": every check
on the bytes runs before the blob is written; the blob is written before the item
row (so an item never points at a missing blob); and when the row cannot be
written, a blob that no other item uses is removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from common.batching import Coalescer, together_or_alone
from common.blobs import BlobMissingError
from common.contracts import ItemSnapshot
from common.s3 import blob_key
from dataset_service.adapters.blobs import ItemBlobs
from dataset_service.adapters.media import image_size, inspect_blob
from dataset_service.domain import (
    DatasetError,
    NotFoundError,
    join_filename,
    normalize_dir,
    sanitize_name,
    system_metadata,
)
from dataset_service.repository import NewItem, Repository

log = logging.getLogger(__name__)

HEAD_BEFORE_PUT_BYTES = 1024 * 1024
"""Blobs at least this large are checked for existence before being uploaded."""


Registered = tuple[ItemSnapshot, bool]
"""An item and whether this request created it (``False``: a repeated request)."""


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """An ingest command: a blob an upload client put into the bucket, to register."""

    dataset_id: str
    s3_key: str
    name: str
    directory: str
    user_metadata: dict[str, Any]
    origin_id: str


@dataclass(frozen=True, slots=True)
class Stored:
    """An item whose blob is checked and stored, ready to insert."""

    new: NewItem
    key: str
    """The blob's content key."""
    sha256: str
    wrote_blob: bool
    """Whether this upload wrote the blob (and removes it again if the item fails)."""


@dataclass(frozen=True)
class ItemStore:
    """Items with their blobs: the repository plus the bucket."""

    repo: Repository
    blobs: ItemBlobs
    max_upload_bytes: int
    _inserter: Coalescer[Stored, tuple[ItemSnapshot, bool]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inserter", Coalescer(self._insert_all))

    async def _stored(
        self,
        *,
        project_id: str,
        dataset_id: str,
        data: bytes,
        name: str,
        directory: str | None,
        user_metadata: dict[str, Any],
        origin_id: str,
        source_key: str | None = None,
    ) -> Stored:
        """Check the bytes, then store the blob under its content hash (unless it is
        there already); the item to insert."""
        clean_name = sanitize_name(name)
        clean_dir = normalize_dir(directory)
        facts = inspect_blob(data, self.max_upload_bytes)
        try:
            width, height = image_size(data, facts.mimetype)
        except ValueError as exc:
            raise DatasetError(f"{clean_name}: {exc}") from exc
        key = blob_key(facts.sha256)
        wrote_blob = False
        # Content-addressed: writing the same bytes again changes nothing, and for small
        # blobs a HEAD first costs as much as the put it might save.
        if source_key != key and (
            facts.size < HEAD_BEFORE_PUT_BYTES or not await self.blobs.exists(key)
        ):
            await self.blobs.put(key, data, facts.mimetype)
            wrote_blob = True
        metadata = {"system": system_metadata(facts, key, width, height), "user": user_metadata}
        new = NewItem(
            project_id=project_id,
            dataset_id=dataset_id,
            name=clean_name,
            filename=join_filename(clean_dir, clean_name),
            dir=clean_dir,
            metadata=metadata,
            origin_id=origin_id,
        )
        return Stored(new, key, facts.sha256, wrote_blob)

    async def _forget_blob(self, stored: Stored) -> None:
        """The item could not be inserted: remove the blob written for it, unless
        another item uses the same content."""
        if stored.wrote_blob and not await self.repo.blob_in_use(stored.sha256):
            with contextlib.suppress(ClientError):
                await self.blobs.delete(stored.key)

    async def add_item(
        self,
        *,
        project_id: str,
        dataset_id: str,
        data: bytes,
        name: str,
        directory: str | None,
        user_metadata: dict[str, Any],
        origin_id: str,
    ) -> tuple[ItemSnapshot, bool]:
        """Validate, store the blob under its content hash, then register the item."""
        stored = await self._stored(
            project_id=project_id,
            dataset_id=dataset_id,
            data=data,
            name=name,
            directory=directory,
            user_metadata=user_metadata,
            origin_id=origin_id,
        )
        # Uploads in flight at the same moment are inserted together (one statement).
        return await self._inserter.submit(stored)

    async def ingest_many(
        self, commands: Sequence[IngestRequest]
    ) -> list[tuple[ItemSnapshot, bool] | Exception]:
        """Register blobs upload clients already put into the bucket; per command the
        ``(item, created)`` or the error it failed with.

        Each blob is read and checked concurrently; the items are then inserted in one
        statement. When that fails (a name already taken in its dataset, say), they are
        inserted one by one, so only the command at fault fails.
        """
        gathered = await asyncio.gather(
            *(self._fetched(command) for command in commands), return_exceptions=True
        )
        checked: list[Stored | Exception] = []
        for outcome in gathered:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the service is stopping
            checked.append(outcome)
        ready = [(n, s) for n, s in enumerate(checked) if isinstance(s, Stored)]
        results: list[tuple[ItemSnapshot, bool] | Exception] = [
            s if isinstance(s, Exception) else NotFoundError("not inserted") for s in checked
        ]
        inserted = await self._insert_all([stored for _, stored in ready])
        for (n, _), result in zip(ready, inserted, strict=True):
            results[n] = result
        return results

    async def _insert_all(
        self, batch: Sequence[Stored]
    ) -> list[tuple[ItemSnapshot, bool] | Exception]:
        """Insert the items of ``batch`` in one statement, or one by one when that fails
        (so only an item at fault fails); the blob of an item that failed is removed
        again unless another item uses it."""
        inserted = await together_or_alone([stored.new for stored in batch], self.repo.insert_items)
        results: list[tuple[ItemSnapshot, bool] | Exception] = []
        for stored, result in zip(batch, inserted, strict=True):
            if result is None:
                result = NotFoundError(f"dataset {stored.new.dataset_id} not found")
            if isinstance(result, Exception):
                await self._forget_blob(stored)
            results.append(result)
        return results

    async def _fetched(self, command: IngestRequest) -> Stored:
        """Read and check the blob of one ingest command."""
        project_id = await self.repo.dataset_project(command.dataset_id)
        if project_id is None:
            raise NotFoundError(f"dataset {command.dataset_id} not found")
        try:
            data = await self.blobs.get(command.s3_key)
        except BlobMissingError as exc:
            raise NotFoundError(
                f"blob {command.s3_key!r} not found in bucket {self.blobs.bucket}"
            ) from exc
        return await self._stored(
            project_id=project_id,
            dataset_id=command.dataset_id,
            data=data,
            name=command.name,
            directory=command.directory,
            user_metadata=command.user_metadata,
            origin_id=command.origin_id,
            source_key=command.s3_key,
        )

    async def delete_blob_if_unused(self, item: ItemSnapshot) -> None:
        """After an item is gone, drop its blob unless other items share the content."""
        system = item.system
        sha, key = system.sha256, system.blob_key
        if sha and key and not await self.repo.blob_in_use(sha):
            try:
                await self.blobs.delete(key)
            except ClientError:
                log.warning("blob not deleted", extra={"key": key}, exc_info=True)

    async def read_blob(self, item: ItemSnapshot) -> Any:
        """The S3 response for an item's blob (``Body`` streams)."""
        key = item.system.blob_key
        if key is None:
            raise NotFoundError(f"item {item.id} has no blob")
        return await self.blobs.open(key)
