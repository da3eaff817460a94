"""The ways an item enters a dataset, shared by the HTTP upload and the ingest command.

Order matters for "bad input loses nothing and leaves nothing behind": every check
on the bytes runs before the blob is written; the blob is written before the item
row (so an item never points at a missing blob); and when the row cannot be
written, a blob that no other item uses is removed again.

Blobs are shared by content across items and projects, so an upload leases its
content (``Repository.lease_blobs``) before it writes or relies on the blob and
releases the lease once its item row names it; a blob is deleted only under the
content's lock, when no item names it and no upload holds a lease
(``Repository.delete_blob_unless_used``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
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
    TooLargeError,
    UnauthorizedError,
    check_blob_key,
    join_filename,
    normalize_dir,
    sanitize_name,
    system_metadata,
)
from dataset_service.domain.thumbnails import thumbnail_keys
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
    api_key: str | None = field(default=None, repr=False)
    """The project key the command proves its project with."""

    @property
    def digest(self) -> str:
        """What the command asks for: the same command id with other data is refused."""
        return request_digest(
            "ingest",
            self.dataset_id,
            self.s3_key,
            self.name,
            self.directory,
            self.user_metadata,
        )


def request_digest(*parts: object) -> str:
    """A stable digest of a request's fields (JSON with sorted keys, SHA-256)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Stored:
    """An item whose blob is checked and stored, ready to insert."""

    new: NewItem
    key: str
    """The blob's content key."""
    sha256: str
    wrote_blob: bool
    """Whether this upload wrote the blob (and removes it again if the item fails)."""
    lease: str
    """The upload's lease on the content, released once the item row names it."""


@dataclass(frozen=True)
class ItemStore:
    """Items with their blobs: the repository plus the bucket."""

    repo: Repository
    blobs: ItemBlobs
    max_upload_bytes: int
    inline_blob_max_bytes: int = 0
    """Blobs at most this large are carried inside their ``item.created.v1`` (0: never)."""
    _inserter: Coalescer[Stored, tuple[ItemSnapshot, bool]] = field(init=False, repr=False)
    _leaser: Coalescer[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inserter", Coalescer(self._insert_all))
        object.__setattr__(self, "_leaser", Coalescer(self.repo.lease_blobs))

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
        origin_digest: str | None = None,
    ) -> Stored:
        """Check the bytes, lease the content, then store the blob under its content
        hash (unless it is there already); the item to insert."""
        clean_name = sanitize_name(name)
        clean_dir = normalize_dir(directory)
        facts = inspect_blob(data, self.max_upload_bytes)
        try:
            width, height = image_size(data, facts.mimetype)
        except ValueError as exc:
            raise DatasetError(f"{clean_name}: {exc}") from exc
        key = blob_key(facts.sha256)
        if origin_digest is None:
            origin_digest = request_digest(
                "http", dataset_id, facts.sha256, clean_name, clean_dir, user_metadata
            )
        lease = await self._leaser.submit(facts.sha256)
        try:
            # Content-addressed: writing the same bytes again changes nothing, and for
            # small blobs a HEAD first costs as much as the put it might save. Checked
            # after the lease: a deletion that ran before it may have removed the blob.
            small = facts.size < HEAD_BEFORE_PUT_BYTES and source_key != key
            wrote_blob = small or not await self.blobs.exists(key)
            if wrote_blob:
                await self.blobs.put(key, data, facts.mimetype)
        except BaseException:
            await self.repo.release_leases([lease])
            raise
        metadata = {"system": system_metadata(facts, key, width, height), "user": user_metadata}
        new = NewItem(
            project_id=project_id,
            dataset_id=dataset_id,
            name=clean_name,
            filename=join_filename(clean_dir, clean_name),
            dir=clean_dir,
            metadata=metadata,
            origin_id=origin_id,
            origin_digest=origin_digest,
            inline_blob=data if facts.size <= self.inline_blob_max_bytes else None,
            lease=lease,
        )
        return Stored(new, key, facts.sha256, wrote_blob, lease)

    async def _forget_blob(self, stored: Stored) -> None:
        """The item could not be inserted: remove the blob written for it, unless
        an item or another upload uses the same content."""
        await self.repo.release_leases([stored.lease])
        if stored.wrote_blob:
            with contextlib.suppress(ClientError):
                await self.repo.delete_blob_unless_used(
                    stored.sha256, lambda: self.blobs.delete(stored.key)
                )

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
        try:
            inserted = await together_or_alone(
                [stored.new for stored in batch], self.repo.insert_items
            )
        except BaseException:
            await self.repo.release_leases([stored.lease for stored in batch])
            raise
        results: list[tuple[ItemSnapshot, bool] | Exception] = []
        for stored, result in zip(batch, inserted, strict=True):
            if result is None:
                result = NotFoundError(f"dataset {stored.new.dataset_id} not found")
            if isinstance(result, Exception):
                await self._forget_blob(stored)
            results.append(result)
        # The insert released the leases of its items; an item that was there already
        # (a repeated request, found after a clash with its twin) keeps its lease.
        await self.repo.release_leases(
            [stored.lease for stored, r in zip(batch, results, strict=True)
             if isinstance(r, tuple) and not r[1]]
        )  # fmt: skip
        return results

    async def _project_of(self, command: IngestRequest) -> str:
        """The project the command proves (its key's), if the dataset is that project's."""
        if not command.api_key:
            raise UnauthorizedError(
                "the command carries no api_key: an ingest command proves its project "
                "with a project API key"
            )
        key_project = await self.repo.project_for_key(command.api_key)
        if key_project is None:
            raise UnauthorizedError("the command's api_key is not a valid project API key")
        project_id = await self.repo.dataset_project(command.dataset_id)
        if project_id != key_project:  # another project's dataset reads as missing
            raise NotFoundError(f"dataset {command.dataset_id} not found")
        return project_id

    async def _fetched(self, command: IngestRequest) -> Stored:
        """Read and check the blob of one ingest command: its project proven, its key
        inside the bucket, its size checked before a byte of it is read."""
        project_id = await self._project_of(command)
        key = check_blob_key(command.s3_key)
        size = await self.blobs.size(key)
        if size is None:
            raise NotFoundError(f"blob {key!r} not found in bucket {self.blobs.bucket}")
        if size > self.max_upload_bytes:
            raise TooLargeError(
                f"blob {key!r} is {size} bytes; the limit is {self.max_upload_bytes} bytes"
            )
        try:
            data = await self.blobs.get(key)
        except BlobMissingError as exc:
            raise NotFoundError(f"blob {key!r} not found in bucket {self.blobs.bucket}") from exc
        return await self._stored(
            project_id=project_id,
            dataset_id=command.dataset_id,
            data=data,
            name=command.name,
            directory=command.directory,
            user_metadata=command.user_metadata,
            origin_id=command.origin_id,
            source_key=key,
            origin_digest=command.digest,
        )

    async def delete_blob_if_unused(self, item: ItemSnapshot) -> None:
        """After an item is gone, drop its blob unless other items share the content."""
        system = item.system
        sha, key = system.sha256, system.blob_key
        if sha and key:

            async def delete() -> None:
                await self.blobs.delete(key)
                # Its thumbnails go with it (a missing one is no error: S3 answers 204).
                for thumbnail in thumbnail_keys(sha):
                    await self.blobs.delete(thumbnail)

            try:
                await self.repo.delete_blob_unless_used(sha, delete)
            except ClientError:
                log.warning("blob not deleted", extra={"key": key}, exc_info=True)

    async def read_blob(self, item: ItemSnapshot) -> Any:
        """The S3 response for an item's blob (``Body`` streams)."""
        key = item.system.blob_key
        if key is None:
            raise NotFoundError(f"item {item.id} has no blob")
        return await self.blobs.open(key)
