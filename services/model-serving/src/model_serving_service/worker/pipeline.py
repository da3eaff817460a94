"""What a worker does with one batch of predict requests: fetch the blobs concurrently,
check and decode them, call Triton once (retrying while it is unreachable, splitting the
batch when one item breaks the model), and say what became of each request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from common.blobs import BlobMissingError, BlobStore
from common.contracts import PredictedAnnotation, PredictRequest, verified_inline_blob
from common.envelope import CloudEvent
from model_serving_service import metrics
from model_serving_service.adapters.triton import (
    InferenceError,
    ModelLoadError,
    ModelNotLoadedError,
    TritonInference,
    TritonTimeoutError,
    TritonUnavailableError,
)
from model_serving_service.domain.requests import backoff_delays
from model_serving_service.domain.specs import input_problem
from model_serving_service.predictor import BadInputError, Prepared, predict_batch, prepare_many
from model_serving_service.repository.holds import ModelHolds
from model_serving_service.repository.models import Model
from model_serving_service.settings import Settings


@dataclass(eq=False)
class Request:
    """One parsed predict request of a batch."""

    event: CloudEvent[PredictRequest]
    key: str
    """Idempotency key (execution id and attempt)."""
    received: float
    """``time.monotonic()`` at receipt."""
    started_at: datetime
    deadline: float
    """``time.monotonic()`` by which the model's timeout has passed."""
    delivery_count: int | None = None
    retries: int = 0
    """Delayed retries this request had (``x-prelabel-retries``)."""
    prepared: Prepared | None = None

    @property
    def request(self) -> PredictRequest:
        """The request's contract."""
        return self.event.data


@dataclass(frozen=True, slots=True)
class Completed:
    """The model answered: these annotations."""

    annotations: list[PredictedAnnotation]


@dataclass(frozen=True, slots=True)
class Failed:
    """The request failed for good; ``poison`` also keeps it in the dead-letter queue."""

    reason: str
    retryable: bool = False
    poison: bool = False


@dataclass(frozen=True, slots=True)
class Transient:
    """Not decided (S3, Triton away): requeue, or fail on the last delivery."""

    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """Its execution was cancelled before the model ran: no outcome, no Triton call."""


SKIPPED = Skipped()

Result = Completed | Failed | Transient | Skipped
"""What became of one request in the pipeline."""

Recheck = Callable[[list["Request"]], Awaitable[set["Request"]]]
"""Which of these requests were cancelled meanwhile (asked again after a model load)."""


@dataclass
class ModelState:
    """Whether the replica's model is loaded on Triton (set by the replica)."""

    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the load finished, successfully or not."""
    error: str | None = None
    """Triton's reason when the load failed."""
    waiting: str | None = None
    """Why the load is waiting (Triton unreachable), while it waits to try again."""


class Pipeline:
    """Turns a batch of requests into one :data:`Result` per request."""

    def __init__(
        self,
        *,
        settings: Settings,
        model: Model,
        blobs: BlobStore,
        inference: TritonInference,
        holds: ModelHolds,
        state: ModelState,
    ) -> None:
        self.settings = settings
        self.model = model
        self.spec = model.spec
        self.blobs = blobs
        self.inference = inference
        self.holds = holds
        self.state = state

    async def run(
        self, batch: list[Request], recheck: Recheck | None = None
    ) -> dict[Request, Result]:
        """One result per request of ``batch``. ``recheck`` is asked again which requests
        were cancelled when the batch had to wait for the model load (a cold start):
        those are :data:`SKIPPED` instead of predicted."""
        results: dict[Request, Result] = {}
        fetched = await asyncio.gather(*(self._fetch(r) for r in batch), return_exceptions=True)
        blobs: list[tuple[Request, bytes]] = []
        for request, got in zip(batch, fetched, strict=True):
            if isinstance(got, BadInputError):
                results[request] = Failed(got.reason, poison=got.poison)
            elif isinstance(got, BlobMissingError):
                item = request.request.item
                results[request] = Failed(f"the blob of item {item.id} is not in the bucket")
            elif isinstance(got, BaseException):
                results[request] = Transient(f"cannot read the item's blob: {got}")
            else:
                blobs.append((request, got))
        # Decoding a batch is one hop to a thread, not one per item.
        prepared = await asyncio.to_thread(
            prepare_many,
            self.spec,
            [(data, r.request.item.system.mimetype or None) for r, data in blobs],
        )
        ready: list[Request] = []
        for (request, _), got_prepared in zip(blobs, prepared, strict=True):
            if isinstance(got_prepared, BadInputError):
                results[request] = Failed(got_prepared.reason, poison=got_prepared.poison)
            else:
                request.prepared = got_prepared
                ready.append(request)
        if ready:
            await self._predict(ready, results, recheck)
        return results

    async def _fetch(self, request: Request) -> bytes:
        """The item's bytes, after the checks that need no bytes (type, size): the ones
        the request carries inline when they are the item's content (SHA-256), else S3's."""
        system = request.request.item.system
        if not system.blob_key:
            raise BadInputError("item has no blob (metadata.system.blob_key is missing)")
        problem = input_problem(self.spec.input_type, system.mimetype)
        if problem is not None:
            raise BadInputError(problem)
        limit = self.settings.max_image_bytes
        if system.size is not None and system.size > limit:
            raise BadInputError(f"item is {system.size} bytes; the model accepts at most {limit}")
        inline = request.request.blob_base64
        if inline is not None:
            data = verified_inline_blob(inline, system.sha256)
            if data is not None and len(data) <= limit:
                metrics.INLINE_BLOBS.labels("used").inc()
                return data
            # Not the item's content (or none to check it against): S3 decides.
            metrics.INLINE_BLOBS.labels("mismatch").inc()
        metrics.BLOB_READS.inc()
        return await self.blobs.get(system.blob_key)

    async def _predict(
        self, items: list[Request], results: dict[Request, Result], recheck: Recheck | None
    ) -> None:
        remaining = min(r.deadline for r in items) - time.monotonic()
        waited = not self.state.loaded.is_set()
        if waited:
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await self.state.loaded.wait()
            except TimeoutError:
                if self.state.waiting is not None:
                    # An outage: hand the requests back for later (delayed retries).
                    reason = f"model {self.model.name} not loaded yet: {self.state.waiting}"
                    results.update((r, Transient(reason)) for r in items)
                    return
                reason = (
                    f"timeout: model {self.model.name} was not loaded within the model's "
                    f"{self.spec.timeout_seconds:g}s timeout"
                )
                results.update((r, Failed(reason, retryable=True)) for r in items)
                return
        if self.state.error is not None:
            reason = f"model {self.model.name} could not be loaded: {self.state.error}"
            results.update((r, Failed(reason, retryable=True)) for r in items)
            return
        if waited and recheck is not None:
            # Cancels that arrived during the cold start: not predicted after all.
            cancelled = await recheck(items)
            results.update((r, SKIPPED) for r in cancelled)
            items = [r for r in items if r not in cancelled]
            if not items:
                return
        await self._infer(items, results)

    async def _infer(self, items: list[Request], results: dict[Request, Result]) -> None:
        delays = backoff_delays(
            self.settings.triton_retry_attempts, self.settings.triton_retry_backoff_seconds
        )
        attempt = 0
        reloaded = False
        while True:
            remaining = min(r.deadline for r in items) - time.monotonic()
            if remaining <= 0:
                reason = f"timeout: no prediction within the model's {self.spec.timeout_seconds:g}s"
                results.update((r, Failed(reason, retryable=True)) for r in items)
                return
            started = time.monotonic()
            try:
                annotations = await predict_batch(
                    self.spec,
                    self.model.triton_name,
                    self.inference,
                    [r.prepared for r in items if r.prepared is not None],
                    timeout=remaining,
                )
            except TritonTimeoutError:
                reason = (
                    f"timeout: Triton did not answer within the model's "
                    f"{self.spec.timeout_seconds:g}s timeout"
                )
                results.update((r, Failed(reason, retryable=True)) for r in items)
                return
            except ModelNotLoadedError as exc:
                if reloaded:
                    results.update(
                        (r, Transient(f"model not loaded on Triton: {exc}")) for r in items
                    )
                    return
                reloaded = True
                try:
                    await self.holds.ensure_loaded(self.model.triton_name)
                except (ModelLoadError, TritonUnavailableError) as load_exc:
                    results.update((r, Transient(f"model not loaded: {load_exc}")) for r in items)
                    return
                continue
            except TritonUnavailableError as exc:
                if attempt < len(delays):
                    metrics.TRITON_RETRIES.inc()
                    await asyncio.sleep(delays[attempt])
                    attempt += 1
                    continue
                reason = f"Triton is unreachable at {self.settings.triton_grpc_url}: {exc}"
                results.update((r, Transient(reason)) for r in items)
                return
            except InferenceError as exc:
                if len(items) > 1:
                    # One bad item must not fail its batch-mates: split and retry.
                    middle = len(items) // 2
                    await self._infer(items[:middle], results)
                    await self._infer(items[middle:], results)
                    return
                results[items[0]] = Failed(f"model error: {exc}")
                return
            metrics.TRITON_SECONDS.observe(time.monotonic() - started)
            metrics.BATCH_SIZE.observe(len(items))
            results.update(
                (r, Completed(found)) for r, found in zip(items, annotations, strict=True)
            )
            return
