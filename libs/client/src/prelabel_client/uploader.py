"""``Uploader``: many files into one dataset, concurrently, skipping what is there.

Three phases: hash every file locally; ask the service, one DQL query per
remote directory (and per 1000 hashes), which contents are already there; send
the rest with at most ``concurrency`` files in flight, retrying transient
failures. Over HTTP a file is done when the service answers with its item.
Over the broker a file is done when its item appears in the dataset: the
uploader polls for the published contents until they are registered or
``register_timeout_s`` passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from prelabel_client.client import MAX_PAGE_SIZE, PrelabelClient
from prelabel_client.plan import (
    DEDUP_CHUNK,
    LocalFile,
    chunked,
    existing_content_filter,
    sha256_of,
)
from prelabel_client.retry import RetryPolicy, describe, retry_call
from prelabel_client.summary import FileOutcome, UploadSummary

if TYPE_CHECKING:
    # Only the broker path needs S3 and AMQP; the HTTP path never imports them.
    from prelabel_client.broker import BrokerIngestor

Via = Literal["http", "broker"]
T = TypeVar("T")


class UploadProgress:
    """Hooks an interface (the CLI's progress bar) can override; all do nothing here."""

    def started(self, files: int, total_bytes: int) -> None:
        """The upload of ``files`` files (``total_bytes`` together) begins."""

    def advanced(self, file: LocalFile) -> None:
        """``file`` no longer needs the network for sending: sent, skipped or failed."""

    def waiting(self, count: int) -> None:
        """Broker path: ``count`` published files wait for the service to register them."""

    def finished(self, outcome: FileOutcome) -> None:
        """``file``'s final outcome is known."""


@dataclass(frozen=True)
class _Hashed:
    file: LocalFile
    sha256: str


class Uploader:
    """Uploads files into a dataset; see the module docstring for the phases."""

    def __init__(
        self,
        client: PrelabelClient,
        *,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        ingestor: BrokerIngestor | None = None,
        progress: UploadProgress | None = None,
        register_timeout_s: float = 120.0,
        poll_interval_s: float = 0.25,
        max_poll_interval_s: float = 2.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.ingestor = ingestor
        self.progress = progress or UploadProgress()
        self.register_timeout_s = register_timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max(max_poll_interval_s, poll_interval_s)

    async def upload(
        self,
        files: Sequence[LocalFile],
        dataset_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        via: Via = "http",
    ) -> UploadSummary:
        """Upload ``files`` into ``dataset_id``; every file ends uploaded, skipped or failed."""
        if via == "broker" and self.ingestor is None:
            raise ValueError("the broker path needs a BrokerIngestor")
        started = time.monotonic()
        outcomes: dict[int, FileOutcome] = {}
        self.progress.started(len(files), sum(file.size for file in files))

        def settle(index: int, outcome: FileOutcome, *, advanced: bool = False) -> None:
            outcomes[index] = outcome
            if not advanced:
                self.progress.advanced(outcome.file)
            self.progress.finished(outcome)

        hashed = await self._hash_all(files, settle)
        to_send = await self._skip_existing(hashed, dataset_id, settle)
        if via == "http":
            await self._bounded(
                [self._send_http(i, h, dataset_id, metadata or {}, settle) for i, h in to_send]
            )
        else:
            published: dict[int, _Hashed] = {}
            await self._bounded(
                [
                    self._send_broker(i, h, dataset_id, metadata or {}, settle, published)
                    for i, h in to_send
                ]
            )
            await self._await_registration(published, dataset_id, settle)
        return UploadSummary(
            [outcomes[i] for i in range(len(files))], elapsed_s=time.monotonic() - started
        )

    # ------------------------------------------------------------------ phases

    async def _bounded(self, jobs: Sequence[Awaitable[None]]) -> None:
        # A sliding window: at most `concurrency` jobs run; the rest wait unstarted.
        window = asyncio.Semaphore(self.concurrency)

        async def run(job: Awaitable[None]) -> None:
            async with window:
                await job

        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(run(job))

    async def _hash_all(
        self, files: Sequence[LocalFile], settle: Callable[..., None]
    ) -> list[tuple[int, _Hashed]]:
        hashed: list[tuple[int, _Hashed]] = []

        async def one(index: int, file: LocalFile) -> None:
            try:
                sha = await asyncio.to_thread(sha256_of, file.path)
            except OSError as exc:
                settle(index, FileOutcome(file, "failed", f"cannot read: {describe(exc)}"))
                return
            hashed.append((index, _Hashed(file, sha)))

        await self._bounded([one(index, file) for index, file in enumerate(files)])
        return sorted(hashed, key=lambda pair: pair[0])

    async def _skip_existing(
        self, hashed: list[tuple[int, _Hashed]], dataset_id: str, settle: Callable[..., None]
    ) -> list[tuple[int, _Hashed]]:
        """Settle files whose content is already in their remote dir; return the rest."""
        by_dir: dict[str, list[tuple[int, _Hashed]]] = {}
        for index, entry in hashed:
            by_dir.setdefault(entry.file.remote_dir, []).append((index, entry))
        existing: dict[str, dict[str, str]] = {}

        async def lookup(directory: str, entries: list[tuple[int, _Hashed]]) -> None:
            shas = sorted({entry.sha256 for _, entry in entries})
            try:
                existing[directory] = await self._existing(dataset_id, directory, shas)
            except Exception as exc:
                # Cannot tell what is there: sending could make duplicates, so do not.
                for index, entry in entries:
                    settle(index, self._failed(entry, f"checking for duplicates: {describe(exc)}"))

        await self._bounded([lookup(d, entries) for d, entries in by_dir.items()])
        to_send: list[tuple[int, _Hashed]] = []
        for directory, entries in by_dir.items():
            if directory not in existing:
                continue
            found = existing[directory]
            first_local: dict[str, LocalFile] = {}
            for index, entry in entries:
                if entry.sha256 in found:
                    reason = f"same content already in {directory}"
                    settle(index, self._outcome(entry, "skipped", reason, found[entry.sha256]))
                elif entry.sha256 in first_local:
                    reason = f"same content as {first_local[entry.sha256].path} in this upload"
                    settle(index, self._outcome(entry, "skipped", reason))
                else:
                    first_local[entry.sha256] = entry.file
                    to_send.append((index, entry))
        return sorted(to_send, key=lambda pair: pair[0])

    async def _existing(
        self, dataset_id: str, directory: str, shas: Sequence[str]
    ) -> dict[str, str]:
        """sha256 -> item id of the items in ``directory`` holding any of ``shas``."""
        found: dict[str, str] = {}
        for chunk in chunked(shas, DEDUP_CHUNK):
            query = existing_content_filter(directory, chunk)

            async def fetch(query: dict[str, Any] = query) -> list[Any]:
                return [
                    item
                    async for item in self.client.iter_items(
                        dataset_id, query, page_size=MAX_PAGE_SIZE
                    )
                ]

            for item in await retry_call(fetch, self.retry):
                sha = item.metadata.get("system", {}).get("sha256")
                if isinstance(sha, str):
                    found.setdefault(sha, item.id)
        return found

    async def _send_http(
        self,
        index: int,
        entry: _Hashed,
        dataset_id: str,
        metadata: dict[str, Any],
        settle: Callable[..., None],
    ) -> None:
        # One key for every attempt: a retry after a lost answer gets the same item back.
        key = uuid.uuid4().hex
        try:
            data = await asyncio.to_thread(entry.file.path.read_bytes)
            item = await retry_call(
                lambda: self.client.upload_file(
                    dataset_id,
                    data,
                    entry.file.name,
                    remote_dir=entry.file.remote_dir,
                    metadata=metadata,
                    idempotency_key=key,
                ),
                self.retry,
            )
        except Exception as exc:
            settle(index, self._failed(entry, describe(exc)))
            return
        settle(index, self._outcome(entry, "uploaded", item_id=item.id))

    async def _send_broker(
        self,
        index: int,
        entry: _Hashed,
        dataset_id: str,
        metadata: dict[str, Any],
        settle: Callable[..., None],
        published: dict[int, _Hashed],
    ) -> None:
        from common.contracts import IngestItem

        assert self.ingestor is not None
        ingestor = self.ingestor
        # The command id is the service's idempotency key: the same for every attempt.
        command_id = uuid.uuid4().hex
        try:
            data = await asyncio.to_thread(entry.file.path.read_bytes)
            if not data:
                # Caught here: the service would dead-letter it, and nobody would see why.
                settle(index, self._failed(entry, "file is empty"))
                return
            key = await retry_call(lambda: ingestor.put_blob(data, entry.sha256), self.retry)
            command = IngestItem(
                dataset_id=dataset_id,
                s3_key=key,
                name=entry.file.name,
                dir=entry.file.remote_dir,
                metadata=metadata,
                api_key=ingestor.api_key,
            )
            await retry_call(lambda: ingestor.publish(command, command_id), self.retry)
        except Exception as exc:
            settle(index, self._failed(entry, describe(exc)))
            return
        published[index] = entry
        self.progress.advanced(entry.file)

    async def _await_registration(
        self, published: dict[int, _Hashed], dataset_id: str, settle: Callable[..., None]
    ) -> None:
        """Poll until every published file is an item, or the deadline passes."""
        pending = dict(published)
        deadline = time.monotonic() + self.register_timeout_s
        interval = self.poll_interval_s
        if pending:
            self.progress.waiting(len(pending))
        while pending:
            by_dir: dict[str, list[int]] = {}
            for index, entry in pending.items():
                by_dir.setdefault(entry.file.remote_dir, []).append(index)
            for directory, indexes in by_dir.items():
                shas = sorted({pending[i].sha256 for i in indexes})
                try:
                    found = await self._existing(dataset_id, directory, shas)
                except Exception as exc:
                    for index in indexes:
                        entry = pending.pop(index)
                        reason = f"published, but checking its registration failed: {describe(exc)}"
                        settle(index, self._failed(entry, reason), advanced=True)
                    continue
                for index in indexes:
                    entry = pending[index]
                    if entry.sha256 in found:
                        del pending[index]
                        outcome = self._outcome(entry, "uploaded", item_id=found[entry.sha256])
                        settle(index, outcome, advanced=True)
            if not pending:
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll_interval_s)
        for index, entry in pending.items():
            reason = (
                f"published, but no item within {self.register_timeout_s:g} s (the dataset "
                "service dead-letters invalid ingest commands with the reason)"
            )
            settle(index, self._failed(entry, reason), advanced=True)

    # ------------------------------------------------------------------ outcomes

    @staticmethod
    def _outcome(
        entry: _Hashed,
        status: Literal["uploaded", "skipped"],
        reason: str = "",
        item_id: str | None = None,
    ) -> FileOutcome:
        return FileOutcome(entry.file, status, reason, item_id, entry.sha256)

    @staticmethod
    def _failed(entry: _Hashed, reason: str) -> FileOutcome:
        return FileOutcome(entry.file, "failed", reason, None, entry.sha256)
