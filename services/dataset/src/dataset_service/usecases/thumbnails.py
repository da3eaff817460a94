"""Thumbnails of image items: read from the bucket, or made once and stored there.

The first request for a blob's thumbnail at a size reads the blob, decodes and encodes
it in a worker thread (never on the event loop; at most ``concurrency`` at once, so a
page of large images cannot take every core and a few hundred MB of memory), stores the
result under the thumbnail's content-derived key and answers it. Every later request
reads the stored object.

Concurrent first requests in one process share one get-or-make (keyed by the thumbnail
key), so it is encoded once. Across replicas two may encode the same thumbnail at the
same moment: both write identical bytes (encoding is deterministic) with one atomic PUT
each, so readers see one complete object either way, never a torn one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from common.blobs import BlobMissingError, BlobReadError
from dataset_service import metrics
from dataset_service.adapters.blobs import ItemBlobs
from dataset_service.adapters.media import render_thumbnail
from dataset_service.domain import DatasetError, NotFoundError
from dataset_service.domain.thumbnails import THUMBNAIL_MIMETYPE, thumbnail_key

log = logging.getLogger(__name__)

Source = Literal["generated", "stored", "shared"]


class StorageUnavailableError(DatasetError):
    """S3 did not answer or refused: worth retrying later."""

    status = 503


@dataclass
class Thumbnails:
    """Get-or-make of thumbnails over the item bucket."""

    blobs: ItemBlobs
    max_pixels: int
    concurrency: int
    _inflight: dict[str, asyncio.Task[tuple[bytes, Source]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _renders: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._renders = asyncio.Semaphore(self.concurrency)

    async def get(self, item_id: str, sha256: str, blob_key: str, size: int) -> bytes:
        """The thumbnail of content ``sha256`` (stored at ``blob_key``) at ``size``."""
        key = thumbnail_key(sha256, size)
        task = self._inflight.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.create_task(self._get_or_make(item_id, key, blob_key, size))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        # Shielded: a caller that goes away does not cancel the work others wait on.
        data, source = await asyncio.shield(task)
        metrics.thumbnails_total().labels("shared" if shared else source).inc()
        return data

    def _settled(self, key: str, task: asyncio.Task[tuple[bytes, Source]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone

    async def _get_or_make(
        self, item_id: str, key: str, blob_key: str, size: int
    ) -> tuple[bytes, Source]:
        try:
            return await self.blobs.get(key), "stored"
        except BlobMissingError:
            pass
        except BlobReadError as exc:
            raise StorageUnavailableError(f"S3 is not available: {exc}") from exc
        try:
            original = await self.blobs.get(blob_key)
        except BlobMissingError as exc:
            raise NotFoundError(f"the blob of item {item_id} is missing from the bucket") from exc
        except BlobReadError as exc:
            raise StorageUnavailableError(f"S3 is not available: {exc}") from exc
        async with self._renders:
            started = time.perf_counter()
            data = await asyncio.to_thread(render_thumbnail, original, size, self.max_pixels)
            metrics.thumbnail_render_seconds().observe(time.perf_counter() - started)
        try:
            await self.blobs.put(key, data, THUMBNAIL_MIMETYPE)
        except BlobReadError:
            # The answer is still right; the next request makes it again.
            log.warning("thumbnail not stored", extra={"key": key}, exc_info=True)
        return data, "generated"
