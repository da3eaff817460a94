"""``Prelabel``: one async client for the five services, grouped by noun.

::

    async with Prelabel.from_env() as client:
        dataset = await client.datasets.by_name("photos")
        model = await client.models.install("digits-classifier")
        service = await client.services.deploy(model.id, min_replicas=0, max_replicas=1)
        await client.services.wait_ready(service.id)
        batch = await client.batches.predict(service.id, dataset_id=dataset.id, filter={})
        async for snapshot in client.batches.watch(batch.id):
            print(snapshot.counts)

Every call raises :class:`~prelabel_client.errors.ApiError` subclasses with the
service's message (or :class:`~prelabel_client.errors.ServiceUnreachableError` with
its URL); retry-safe requests are retried with the :class:`RetryPolicy`; lists that
page are async iterators (``iter`` methods).
"""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import tarfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from prelabel_client.client import MAX_PAGE_SIZE, PrelabelClient
from prelabel_client.endpoints import Endpoints, Service
from prelabel_client.errors import ClientError, NotFoundError
from prelabel_client.http import ServiceHttp
from prelabel_client.models import (
    FINAL_STATUSES,
    Acceptance,
    Annotation,
    ApiKey,
    Batch,
    Budget,
    BurnRate,
    CatalogEntry,
    Correction,
    Dataset,
    DeadLetter,
    DeadLetterPage,
    DirectoryListing,
    Execution,
    ExecutionPage,
    ExecutionStatus,
    ExportFormat,
    InstallOptions,
    Item,
    ItemPage,
    Model,
    ModelService,
    ModelUsageReport,
    Pipeline,
    PipelineExecutionPage,
    PipelineRun,
    PredictNow,
    Project,
    ReplayResult,
    ReplicaUsage,
    RerunResult,
    ReviewAction,
    Scaling,
    ServiceScaling,
    Task,
    TaskItem,
    TaskItemPage,
    TaskItemStatus,
    TaskProgress,
    Thumbnail,
    Trigger,
    TriggerSpec,
    Usage,
)
from prelabel_client.retry import RetryPolicy
from prelabel_client.settings import ClientSettings
from prelabel_client.uploader import Uploader, UploadProgress

MAX_EXECUTION_PAGE = 500
MAX_TASK_PAGE = 1000


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the ``None`` ones (lists repeat the parameter)."""
    return {key: value for key, value in values.items() if value is not None}


class _Waits:
    """Polling with a deadline, for the ``wait_*`` and ``watch`` helpers."""

    def __init__(self, timeout_s: float, poll_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    async def next(self, waiting_for: str) -> None:
        if time.monotonic() >= self.deadline:
            raise TimeoutError(f"gave up after {self.timeout_s:g}s waiting for {waiting_for}")
        await asyncio.sleep(self.poll_s)


# --------------------------------------------------------------------------- dataset


class Projects:
    """Projects and their API keys (the dataset service's admin key)."""

    def __init__(self, http: ServiceHttp, admin_key: str | None) -> None:
        self._http = http
        self._admin_key = admin_key

    def _admin(self) -> dict[str, str]:
        if not self._admin_key:
            raise ClientError("this needs the admin key (PRELABEL_ADMIN_KEY or --admin-key)")
        return {"Authorization": f"Bearer {self._admin_key}"}

    async def create(self, name: str) -> Project:
        """A new project."""
        answer = await self._http.json(
            "POST", "/projects", json={"name": name}, headers=self._admin()
        )
        return Project.model_validate(answer)

    async def create_api_key(self, project_id: str, name: str = "default") -> ApiKey:
        """A new API key of a project; its secret is only in this answer (``key``)."""
        answer = await self._http.json(
            "POST", f"/projects/{project_id}/api-keys", json={"name": name}, headers=self._admin()
        )
        return ApiKey.model_validate(answer)

    async def whoami(self) -> str:
        """The project id of the client's API key (checks the key)."""
        answer = await self._http.json("GET", "/whoami")
        return str(answer["project_id"])


class Datasets:
    """The project's datasets."""

    def __init__(self, client: PrelabelClient) -> None:
        self._client = client

    async def list(self, name: str | None = None) -> builtins.list[Dataset]:
        """Every dataset (only the one called ``name`` when given)."""
        return await self._client.list_datasets(name)

    async def get(self, dataset_id: str) -> Dataset:
        """One dataset with its item count."""
        return await self._client.get_dataset(dataset_id)

    async def by_name(self, name: str, *, create: bool = False) -> Dataset:
        """The dataset called ``name`` (created when missing and ``create`` is set)."""
        return await self._client.dataset_by_name(name, create=create)

    async def resolve(self, name_or_id: str) -> Dataset:
        """A dataset by name, or by id when no dataset has that name."""
        found = await self._client.find_dataset(name_or_id)
        if found is not None:
            return found
        try:
            return await self._client.get_dataset(name_or_id)
        except NotFoundError as exc:
            raise NotFoundError(
                404, f"no dataset called or with id {name_or_id!r}", service="dataset"
            ) from exc

    async def create(self, name: str, description: str = "") -> Dataset:
        """A new dataset (``ConflictError`` if the name is taken)."""
        return await self._client.create_dataset(name, description)

    async def delete(self, dataset_id: str) -> None:
        """Delete a dataset and every item in it."""
        await self._client.api.request("DELETE", f"/datasets/{dataset_id}")

    async def directories(self, dataset_id: str, parent: str = "/") -> DirectoryListing:
        """The subdirectories of ``parent`` with their item counts (visible items, in each
        and below it)."""
        answer = await self._client.api.json(
            "GET", f"/datasets/{dataset_id}/directories", params={"parent": parent}
        )
        return DirectoryListing.model_validate(answer)


class Items:
    """Items of the project's datasets."""

    def __init__(self, client: PrelabelClient) -> None:
        self._client = client

    async def query(
        self,
        dataset_id: str,
        filter: dict[str, Any] | None = None,
        *,
        sort: list[dict[str, Any]] | dict[str, Any] | None = None,
        page: int = 0,
        page_size: int = 100,
    ) -> ItemPage:
        """One page of the items matching a DQL filter."""
        return await self._client.query_items(
            dataset_id, filter, sort=sort, page=page, page_size=page_size
        )

    def iter(
        self,
        dataset_id: str,
        filter: dict[str, Any] | None = None,
        *,
        sort: list[dict[str, Any]] | dict[str, Any] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[Item]:
        """Every item matching the filter, page after page."""
        return self._client.iter_items(dataset_id, filter, sort=sort, page_size=page_size)

    async def seek(
        self,
        dataset_id: str,
        filter: dict[str, Any] | None = None,
        *,
        sort: list[dict[str, Any]] | dict[str, Any] | None = None,
        cursor: str | None = None,
        page_size: int = 100,
    ) -> ItemPage:
        """One page by keyset: the first (no ``cursor``), or the one a page's
        ``next_cursor`` / ``prev_cursor`` names; as fast at page 1,000 as at page 1.
        Sorts by item columns only (the default: filename)."""
        body: dict[str, Any] = {"filter": filter or {}, "page_size": page_size}
        if sort is not None:
            body["sort"] = sort
        if cursor is not None:
            body["cursor"] = cursor
        answer = await self._client.api.json(
            "POST", f"/datasets/{dataset_id}/items/query", json=body
        )
        return ItemPage.model_validate(answer)

    async def thumbnail(
        self, item_id: str, size: int = 256, *, if_none_match: str | None = None
    ) -> Thumbnail:
        """The item's image scaled to fit ``size`` (128, 256 or 512) as WebP; with
        ``if_none_match`` (an earlier answer's ETag) an unchanged one comes back as
        ``not_modified`` without its bytes."""
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        response = await self._client.api.request(
            "GET", f"/items/{item_id}/thumbnail", params={"size": size}, headers=headers
        )
        return Thumbnail(
            content=response.content if response.status_code != 304 else b"",
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            cache_control=response.headers.get("cache-control"),
            not_modified=response.status_code == 304,
        )

    async def get(self, item_id: str) -> Item:
        """One item."""
        return await self._client.get_item(item_id)

    async def download(self, item_id: str) -> bytes:
        """The item's bytes."""
        return await self._client.download_item(item_id)

    async def download_to(self, item_id: str, path: Path) -> int:
        """Write the item's bytes to ``path``; the number of bytes written."""
        written = 0
        with path.open("wb") as handle:
            async for chunk in self._client.stream_item(item_id):
                handle.write(chunk)
                written += len(chunk)
        return written

    async def update(
        self,
        item_id: str,
        *,
        name: str | None = None,
        dir: str | None = None,
        hidden: bool | None = None,
        user_metadata: dict[str, Any] | None = None,
    ) -> Item:
        """Change the item's name, directory, visibility or user metadata."""
        body = _params(name=name, dir=dir, hidden=hidden)
        if user_metadata is not None:
            body["metadata"] = {"user": user_metadata}
        answer = await self._client.api.json("PATCH", f"/items/{item_id}", json=body)
        return Item.model_validate(answer)

    async def delete(self, item_id: str) -> None:
        """Delete an item."""
        await self._client.api.request("DELETE", f"/items/{item_id}")

    async def upload(
        self,
        dataset_id: str,
        content: bytes | Path,
        name: str | None = None,
        *,
        remote_dir: str = "/",
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Item:
        """Upload one file (retried safely: one idempotency key for every attempt)."""
        return await self._client.upload_file(
            dataset_id,
            content,
            name,
            remote_dir=remote_dir,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )


# --------------------------------------------------------------------------- model-serving


def pack_model_directory(directory: Path) -> bytes:
    """A Triton model directory (``config.pbtxt`` + version folders) as a .tar.gz."""
    if not (directory / "config.pbtxt").is_file():
        raise ClientError(f"{directory} is not a Triton model directory (no config.pbtxt)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.add(path, arcname=str(path.relative_to(directory)))
    return buffer.getvalue()


class Models:
    """The catalog and the project's models."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def catalog(self) -> builtins.list[CatalogEntry]:
        """The built-in models a project can install."""
        return [CatalogEntry.model_validate(e) for e in await self._http.json("GET", "/catalog")]

    async def install(self, catalog_name: str, options: InstallOptions | None = None) -> Model:
        """Copy a catalog model into the project."""
        body = (options or InstallOptions()).model_dump(exclude_none=True)
        answer = await self._http.json("POST", f"/catalog/{catalog_name}/install", json=body)
        return Model.model_validate(answer)

    async def push(
        self,
        source: Path | bytes,
        spec: Mapping[str, Any],
        *,
        name: str,
        version: str = "1",
    ) -> Model:
        """Bring your own model: a Triton model directory (or its archive) plus the
        spec of its input and output adapter."""
        archive = pack_model_directory(source) if isinstance(source, Path) else source
        answer = await self._http.json(
            "POST",
            "/models",
            files={"archive": ("model.tar.gz", archive, "application/gzip")},
            data={"spec": json.dumps(dict(spec)), "name": name, "version": version},
        )
        return Model.model_validate(answer)

    async def list(self) -> builtins.list[Model]:
        """The project's models."""
        return [Model.model_validate(m) for m in await self._http.json("GET", "/models")]

    async def get(self, model_id: str) -> Model:
        """One model."""
        return Model.model_validate(await self._http.json("GET", f"/models/{model_id}"))

    async def delete(self, model_id: str) -> None:
        """Remove a model no service uses."""
        await self._http.request("DELETE", f"/models/{model_id}")


class Services:
    """Model services: deployed by model-serving, scaled by the trigger-router."""

    def __init__(self, serving: ServiceHttp, router: ServiceHttp) -> None:
        self._serving = serving
        self._router = router

    async def deploy(
        self, model_id: str, name: str | None = None, scaling: Scaling | None = None
    ) -> ModelService:
        """Deploy a model (status ``deploying``, then ``ready`` or ``failed``)."""
        body = {"model_id": model_id, **(scaling or Scaling()).model_dump(exclude_none=True)}
        if name is not None:
            body["name"] = name
        return ModelService.model_validate(await self._serving.json("POST", "/services", json=body))

    async def list(self) -> builtins.list[ModelService]:
        """The project's model services."""
        return [
            ModelService.model_validate(s) for s in await self._serving.json("GET", "/services")
        ]

    async def get(self, service_id: str) -> ModelService:
        """One service with its queue depth and live replicas."""
        return ModelService.model_validate(
            await self._serving.json("GET", f"/services/{service_id}")
        )

    async def scaling(self, service_id: str) -> ServiceScaling:
        """The autoscaler's view: desired, actual and running replicas."""
        return ServiceScaling.model_validate(
            await self._router.json("GET", f"/services/{service_id}")
        )

    async def scale(self, service_id: str, scaling: Scaling) -> ModelService:
        """Change scaling settings (only the fields given)."""
        body = scaling.model_dump(exclude_none=True)
        if not body:
            raise ClientError("nothing to change: give at least one scaling setting")
        return ModelService.model_validate(
            await self._serving.json("PATCH", f"/services/{service_id}", json=body)
        )

    async def undeploy(self, service_id: str) -> ModelService:
        """Undeploy: queued requests are served first, then the replicas stop."""
        return ModelService.model_validate(
            await self._serving.json("DELETE", f"/services/{service_id}")
        )

    async def dead_letters(self, service_id: str, limit: int = 20) -> builtins.list[DeadLetter]:
        """Requests of the service that were dead-lettered, with the reason."""
        answer = await self._serving.json(
            "GET", f"/services/{service_id}/dead-letters", params={"limit": limit}
        )
        return [DeadLetter.model_validate(d) for d in answer]

    async def predict_now(self, service_id: str, content: bytes, name: str = "file") -> PredictNow:
        """Run the service's model on one file and answer with its annotations."""
        answer = await self._serving.json(
            "POST", f"/services/{service_id}/predict-now", files={"file": (name, content)}
        )
        return PredictNow.model_validate(answer)

    async def wait_ready(
        self, service_id: str, *, timeout_s: float = 180.0, poll_s: float = 0.5
    ) -> ServiceScaling:
        """Wait until model-serving says ``ready`` and the router knows the service."""
        waits = _Waits(timeout_s, poll_s)
        while True:
            service = await self.get(service_id)
            if service.status == "failed":
                raise ClientError(f"service {service_id} failed to deploy: {service.error}")
            if service.status == "ready":
                break
            await waits.next(f"service {service_id} to be ready (status {service.status})")
        while True:
            try:
                known = await self.scaling(service_id)
                if known.status == "ready":
                    return known
            except NotFoundError:
                pass  # the router learns of the service from service.deployed.v1
            await waits.next(f"the trigger-router to see service {service_id} ready")


# --------------------------------------------------------------------------- trigger-router


class Triggers:
    """Triggers: run a model service on the items that match, when they change."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def create(self, name: str, spec: TriggerSpec, *, active: bool = True) -> Trigger:
        """A new trigger (its filter must parse, its service exist)."""
        body = {"name": name, "active": active, "spec": spec.model_dump()}
        return Trigger.model_validate(await self._http.json("POST", "/triggers", json=body))

    async def list(
        self, service_id: str | None = None, active: bool | None = None
    ) -> builtins.list[Trigger]:
        """The project's triggers."""
        answer = await self._http.json(
            "GET", "/triggers", params=_params(service_id=service_id, active=active)
        )
        return [Trigger.model_validate(t) for t in answer]

    async def get(self, trigger_id: str) -> Trigger:
        """One trigger."""
        return Trigger.model_validate(await self._http.json("GET", f"/triggers/{trigger_id}"))

    async def update(
        self,
        trigger_id: str,
        *,
        name: str | None = None,
        active: bool | None = None,
        spec: TriggerSpec | None = None,
    ) -> Trigger:
        """Change a trigger (``spec`` is replaced whole)."""
        body = _params(name=name, active=active)
        if spec is not None:
            body["spec"] = spec.model_dump()
        answer = await self._http.json("PATCH", f"/triggers/{trigger_id}", json=body)
        return Trigger.model_validate(answer)

    async def pause(self, trigger_id: str) -> Trigger:
        """Stop a trigger from firing."""
        return Trigger.model_validate(
            await self._http.json("POST", f"/triggers/{trigger_id}/pause")
        )

    async def resume(self, trigger_id: str) -> Trigger:
        """Let a paused trigger fire again."""
        return Trigger.model_validate(
            await self._http.json("POST", f"/triggers/{trigger_id}/resume")
        )

    async def delete(self, trigger_id: str) -> None:
        """Delete a trigger (its executions stay)."""
        await self._http.request("DELETE", f"/triggers/{trigger_id}")


class Executions:
    """The execution ledger: one item through one model service each."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    @staticmethod
    def _filters(
        service_id: str | None,
        trigger_id: str | None,
        status: Sequence[ExecutionStatus] | ExecutionStatus | None,
        item_id: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> dict[str, Any]:
        statuses = [status] if isinstance(status, str) else list(status or [])
        return _params(
            service_id=service_id,
            trigger_id=trigger_id,
            status=statuses or None,
            item_id=item_id,
            since=since.isoformat() if since else None,
            until=until.isoformat() if until else None,
        )

    async def list(
        self,
        *,
        service_id: str | None = None,
        trigger_id: str | None = None,
        status: Sequence[ExecutionStatus] | ExecutionStatus | None = None,
        item_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 0,
        page_size: int = 100,
    ) -> ExecutionPage:
        """One page of executions, newest first."""
        params = self._filters(service_id, trigger_id, status, item_id, since, until)
        answer = await self._http.json(
            "GET", "/executions", params={**params, "page": page, "page_size": page_size}
        )
        return ExecutionPage.model_validate(answer)

    async def iter(
        self,
        *,
        service_id: str | None = None,
        trigger_id: str | None = None,
        status: Sequence[ExecutionStatus] | ExecutionStatus | None = None,
        item_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = MAX_EXECUTION_PAGE,
    ) -> AsyncIterator[Execution]:
        """Every matching execution, newest first, page after page."""
        page = 0
        while True:
            found = await self.list(
                service_id=service_id,
                trigger_id=trigger_id,
                status=status,
                item_id=item_id,
                since=since,
                until=until,
                page=page,
                page_size=page_size,
            )
            for execution in found.items:
                yield execution
            if not found.has_next:
                return
            page += 1

    async def counts(
        self,
        *,
        service_id: str | None = None,
        trigger_id: str | None = None,
        item_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, int]:
        """Executions per status (every status present)."""
        params = self._filters(service_id, trigger_id, None, item_id, since, until)
        answer = await self._http.json("GET", "/executions/counts", params=params)
        return {str(k): int(v) for k, v in answer.items()}

    async def get(self, execution_id: str) -> Execution:
        """One execution."""
        return Execution.model_validate(await self._http.json("GET", f"/executions/{execution_id}"))

    async def rerun(self, execution_id: str) -> Execution:
        """Run a failed or cancelled execution again."""
        return Execution.model_validate(
            await self._http.json("POST", f"/executions/{execution_id}/rerun")
        )

    async def rerun_failed(
        self,
        *,
        service_id: str | None = None,
        trigger_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> RerunResult:
        """Run every failed execution matching the filters again."""
        params = self._filters(service_id, trigger_id, None, None, since, until)
        return RerunResult.model_validate(
            await self._http.json("POST", "/executions/rerun", params=params)
        )

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel an execution that has not started."""
        return Execution.model_validate(
            await self._http.json("POST", f"/executions/{execution_id}/cancel")
        )


class Batches:
    """Predict now on a selection: one batch of executions per request."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def predict(
        self,
        service_id: str,
        *,
        item_ids: Sequence[str] | None = None,
        dataset_id: str | None = None,
        filter: dict[str, Any] | None = None,
        force: bool = False,
    ) -> Batch:
        """Run the service on items given by id, or on a dataset's items matching a filter.

        Items this service's model version already predicted successfully (by a trigger,
        a batch or a pipeline) are skipped and counted in ``counts["skipped"]``;
        ``force=True`` predicts them again."""
        if (item_ids is None) == (dataset_id is None):
            raise ClientError("give either item ids or a dataset (with an optional filter)")
        body: dict[str, Any] = (
            {"item_ids": list(item_ids)}
            if item_ids is not None
            else {"dataset_id": dataset_id, "filter": filter or {}}
        )
        if force:
            body["force"] = True
        answer = await self._http.json("POST", f"/services/{service_id}/predict", json=body)
        return Batch.model_validate(answer)

    async def list(self) -> builtins.list[Batch]:
        """The project's latest batches."""
        return [Batch.model_validate(b) for b in await self._http.json("GET", "/batches")]

    async def get(self, batch_id: str) -> Batch:
        """One batch: counts per status and progress."""
        return Batch.model_validate(await self._http.json("GET", f"/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> Batch:
        """Cancel every execution of the batch that has not started."""
        return Batch.model_validate(await self._http.json("POST", f"/batches/{batch_id}/cancel"))

    async def watch(
        self, batch_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None
    ) -> AsyncIterator[Batch]:
        """The batch after every poll, until every execution is final."""
        waits = _Waits(timeout_s if timeout_s is not None else float("inf"), poll_s)
        while True:
            batch = await self.get(batch_id)
            yield batch
            if batch.done or all(
                s in FINAL_STATUSES or s == "skipped" for s, n in batch.counts.items() if n
            ):
                return
            await waits.next(f"batch {batch_id} to finish")


class Pipelines:
    """Pipelines: Dataset -> Predict -> Task graphs run by the trigger-router."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def create(self, definition: Mapping[str, Any]) -> Pipeline:
        """A new pipeline (``created``; start it to let items in)."""
        answer = await self._http.json("POST", "/pipelines", json=dict(definition))
        return Pipeline.model_validate(answer)

    async def update(self, pipeline_id: str, definition: Mapping[str, Any]) -> Pipeline:
        """Replace a pipeline's definition (a new version)."""
        answer = await self._http.json("PUT", f"/pipelines/{pipeline_id}", json=dict(definition))
        return Pipeline.model_validate(answer)

    async def apply(self, definition: Mapping[str, Any]) -> tuple[Pipeline, bool]:
        """Create the pipeline named in ``definition``, or update the one of that name;
        answers it and whether it was created."""
        name = definition.get("name")
        for pipeline in await self.list():
            if pipeline.name == name:
                return await self.update(pipeline.id, definition), False
        return await self.create(definition), True

    async def list(self) -> builtins.list[Pipeline]:
        """The project's pipelines."""
        return [Pipeline.model_validate(p) for p in await self._http.json("GET", "/pipelines")]

    async def get(self, pipeline_id: str) -> Pipeline:
        """One pipeline with its counts per node and status."""
        return Pipeline.model_validate(await self._http.json("GET", f"/pipelines/{pipeline_id}"))

    async def start(self, pipeline_id: str) -> Pipeline:
        """Let items in (the dataset node's trigger fires)."""
        answer = await self._http.json("POST", f"/pipelines/{pipeline_id}/start")
        return Pipeline.model_validate(answer)

    async def stop(self, pipeline_id: str) -> Pipeline:
        """Stop letting items in (those inside finish)."""
        answer = await self._http.json("POST", f"/pipelines/{pipeline_id}/stop")
        return Pipeline.model_validate(answer)

    async def delete(self, pipeline_id: str) -> None:
        """Delete a pipeline."""
        await self._http.request("DELETE", f"/pipelines/{pipeline_id}")

    async def run(
        self,
        pipeline_id: str,
        *,
        item_ids: Sequence[str] | None = None,
        filter: dict[str, Any] | None = None,
    ) -> PipelineRun:
        """Send items already in the dataset through the pipeline now."""
        if (item_ids is None) == (filter is None):
            raise ClientError("give either item ids or a filter")
        body = {"item_ids": list(item_ids)} if item_ids is not None else {"filter": filter}
        answer = await self._http.json("POST", f"/pipelines/{pipeline_id}/run", json=body)
        return PipelineRun.model_validate(answer)

    async def executions(
        self,
        pipeline_id: str,
        *,
        status: str | None = None,
        node_id: str | None = None,
        page: int = 0,
        page_size: int = 100,
    ) -> PipelineExecutionPage:
        """One page of the pipeline's executions, newest first."""
        params = _params(status=status, node_id=node_id, page=page, page_size=page_size)
        answer = await self._http.json("GET", f"/pipelines/{pipeline_id}/executions", params=params)
        return PipelineExecutionPage.model_validate(answer)


# --------------------------------------------------------------------------- annotation


class Annotations:
    """Annotations of items (from models and people)."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def list(
        self,
        *,
        item_id: str | None = None,
        dataset_id: str | None = None,
        include_deleted: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[Annotation]:
        """One page of annotations of an item or a dataset."""
        answer = await self._http.json(
            "GET",
            "/annotations",
            params=_params(
                item_id=item_id,
                dataset_id=dataset_id,
                include_deleted=include_deleted or None,
                limit=limit,
                offset=offset,
            ),
        )
        return [Annotation.model_validate(a) for a in answer]

    async def iter(
        self, *, item_id: str | None = None, dataset_id: str | None = None, page_size: int = 1000
    ) -> AsyncIterator[Annotation]:
        """Every annotation of an item or a dataset, page after page."""
        offset = 0
        while True:
            found = await self.list(
                item_id=item_id, dataset_id=dataset_id, limit=page_size, offset=offset
            )
            for annotation in found:
                yield annotation
            if len(found) < page_size:
                return
            offset += page_size

    async def get(self, annotation_id: str) -> Annotation:
        """One annotation."""
        return Annotation.model_validate(
            await self._http.json("GET", f"/annotations/{annotation_id}")
        )

    async def export_dataset(self, dataset_id: str, format: ExportFormat = "coco") -> bytes:
        """A dataset's current annotations as COCO JSON or JSON lines."""
        response = await self._http.request(
            "GET", f"/datasets/{dataset_id}/export", params={"format": format}
        )
        return response.content


class Tasks:
    """Labeling tasks: items to review, with the models' annotations."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def create(
        self,
        name: str,
        dataset_id: str,
        *,
        auto_add: bool = False,
        auto_add_from_services: Sequence[str] = (),
        pipeline_id: str | None = None,
    ) -> Task:
        """A new task; ``auto_add``/``auto_add_from_services``: predictions fill it."""
        body = {
            "name": name,
            "dataset_id": dataset_id,
            "auto_add": auto_add,
            "auto_add_from_services": list(auto_add_from_services),
            **_params(pipeline_id=pipeline_id),
        }
        return Task.model_validate(await self._http.json("POST", "/tasks", json=body))

    async def list(self) -> builtins.list[Task]:
        """The project's tasks, newest first."""
        return [Task.model_validate(t) for t in await self._http.json("GET", "/tasks")]

    async def get(self, task_id: str) -> Task:
        """One task with its progress."""
        return Task.model_validate(await self._http.json("GET", f"/tasks/{task_id}"))

    async def progress(self, task_id: str) -> TaskProgress:
        """Counts per status and the fraction reviewed."""
        return TaskProgress.model_validate(
            await self._http.json("GET", f"/tasks/{task_id}/progress")
        )

    async def items(
        self,
        task_id: str,
        *,
        status: TaskItemStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> TaskItemPage:
        """One page of a task's items, each with its current annotations."""
        answer = await self._http.json(
            "GET",
            f"/tasks/{task_id}/items",
            params=_params(status=status, limit=limit, offset=offset),
        )
        return TaskItemPage.model_validate(answer)

    async def iter_items(
        self, task_id: str, *, status: TaskItemStatus | None = None, page_size: int = 500
    ) -> AsyncIterator[TaskItem]:
        """Every item of the task (with ``status``), page after page."""
        offset = 0
        while True:
            page = await self.items(task_id, status=status, limit=page_size, offset=offset)
            for item in page.items:
                yield item
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def next_pending(self, task_id: str) -> TaskItem | None:
        """The oldest item waiting for review, or ``None``."""
        page = await self.items(task_id, status="pending-review", limit=1)
        return page.items[0] if page.items else None

    async def add_items(self, task_id: str, item_ids: Sequence[str]) -> builtins.list[str]:
        """Add items by hand; the ids that were not in the task yet."""
        answer = await self._http.json(
            "POST", f"/tasks/{task_id}/items", json={"item_ids": list(item_ids)}
        )
        return [str(i) for i in answer["added"]]

    async def review(
        self,
        task_id: str,
        item_id: str,
        action: ReviewAction,
        *,
        reviewer: str,
        corrections: Sequence[Correction] = (),
    ) -> TaskItem:
        """Approve, correct (with annotation edits) or discard a pending item."""
        body = {
            "action": action,
            "reviewer": reviewer,
            "corrections": [c.model_dump(exclude_unset=True) for c in corrections],
        }
        answer = await self._http.json(
            "POST", f"/tasks/{task_id}/items/{item_id}/review", json=body
        )
        return TaskItem.model_validate(answer)

    async def acceptance(self, task_id: str) -> builtins.list[Acceptance]:
        """Per model version: approved without change / reviewed."""
        answer = await self._http.json("GET", f"/tasks/{task_id}/acceptance")
        return [Acceptance.model_validate(a) for a in answer]

    async def export(
        self,
        task_id: str,
        format: ExportFormat = "coco",
        status: Sequence[TaskItemStatus] | None = None,
    ) -> bytes:
        """The task's items and annotations as COCO JSON or JSON lines."""
        params: dict[str, Any] = {"format": format}
        if status:
            params["status"] = list(status)
        response = await self._http.request("GET", f"/tasks/{task_id}/export", params=params)
        return response.content


# --------------------------------------------------------------------------- billing


class Billing:
    """The project's automation budget, usage and burn rate."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http

    async def budget(self) -> Budget:
        """The budget, what was spent and whether it is exhausted."""
        return Budget.model_validate(await self._http.json("GET", "/budget"))

    async def set_budget(self, amount: Decimal | str | None) -> Budget:
        """Set the budget (``None``: unlimited)."""
        body = {"amount": None if amount is None else str(amount)}
        return Budget.model_validate(await self._http.json("PUT", "/budget", json=body))

    async def top_up(self, amount: Decimal | str) -> Budget:
        """Add to the budget."""
        answer = await self._http.json("POST", "/budget/top-up", json={"amount": str(amount)})
        return Budget.model_validate(answer)

    async def usage(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        service_id: str | None = None,
    ) -> Usage:
        """Runtime, cost and predictions per service and UTC day (default: 30 days)."""
        params = _params(
            since=since.isoformat() if since else None,
            until=until.isoformat() if until else None,
            service_id=service_id,
        )
        return Usage.model_validate(await self._http.json("GET", "/usage", params=params))

    async def replicas(
        self, *, since: date | None = None, until: date | None = None
    ) -> builtins.list[ReplicaUsage]:
        """Each replica's runtime and cost within the range."""
        params = _params(
            since=since.isoformat() if since else None, until=until.isoformat() if until else None
        )
        answer = await self._http.json("GET", "/usage/replicas", params=params)
        return [ReplicaUsage.model_validate(r) for r in answer]

    async def models(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> ModelUsageReport:
        """What pre-labeling saves, per model version of each model service: runtime and
        cost, predictions, acceptance rate, share auto-accepted and cost per accepted label
        (window ``[start, end)``; default: ever, until now)."""
        params = _params(
            **{
                "from": start.isoformat() if start else None,
                "to": end.isoformat() if end else None,
            }
        )
        answer = await self._http.json("GET", "/usage/models", params=params)
        return ModelUsageReport.model_validate(answer)

    async def burn_rate(self) -> BurnRate:
        """What the running replicas cost right now, and how long the budget lasts."""
        return BurnRate.model_validate(await self._http.json("GET", "/burn-rate"))


# --------------------------------------------------------------------------- dead letters


class DeadLetters:
    """Dead letters of each service's queues, the project's only: list and replay."""

    def __init__(self, services: Mapping[Service, ServiceHttp]) -> None:
        self._services = services

    def _http(self, service: Service) -> ServiceHttp:
        try:
            return self._services[service]
        except KeyError:
            names = ", ".join(self._services)
            raise ClientError(f"no service {service!r} (one of: {names})") from None

    async def list(
        self, service: Service, queue: str | None = None, *, limit: int = 50
    ) -> DeadLetterPage:
        """The project's dead letters of ``service``'s queues (or of one ``queue``: its name
        or its handler's), left in place, secrets redacted; ``truncated`` when the service
        stopped looking before the end."""
        answer = await self._http(service).json(
            "GET", "/dead-letters", params=_params(queue=queue, limit=limit)
        )
        return DeadLetterPage.model_validate(answer)

    async def replay(
        self,
        service: Service,
        ids: Sequence[str] | None = None,
        *,
        all: bool = False,
        queue: str | None = None,
    ) -> ReplayResult:
        """Put the project's dead letters (``ids`` from :meth:`list`, or ``all`` of them, in
        ``queue`` or every queue of ``service``) back on the queue each died in."""
        if (ids is None or not builtins.list(ids)) == (not all):
            raise ClientError("give either ids or all=True")
        body: dict[str, Any] = {"all": True} if all else {"ids": builtins.list(ids or [])}
        if queue is not None:
            body["queue"] = queue
        answer = await self._http(service).json("POST", "/dead-letters/replay", json=body)
        return ReplayResult.model_validate(answer)


# --------------------------------------------------------------------------- the facade


class Prelabel:
    """Every service of one project, grouped by noun; see the module docstring.

    ``endpoints``: an :class:`Endpoints`, or one base URL (``<url>/api/<service>``).
    ``transports`` replaces the HTTP transport of some services (tests).
    """

    def __init__(
        self,
        endpoints: Endpoints | str | None,
        api_key: str,
        *,
        admin_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 32,
        transports: Mapping[Service, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        if not api_key:
            raise ClientError("an API key is required (PRELABEL_API_KEY or `prelabel login`)")
        self.endpoints = (
            endpoints if isinstance(endpoints, Endpoints) else Endpoints.resolve(endpoints)
        )
        self.retry = retry if retry is not None else RetryPolicy()
        transports = transports or {}
        self.dataset_client = PrelabelClient(
            self.endpoints.dataset,
            api_key,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transports.get("dataset"),
            retry=self.retry,
        )

        def http(service: Service) -> ServiceHttp:
            return ServiceHttp(
                service,
                self.endpoints.of(service),
                api_key,
                timeout_s=timeout_s,
                transport=transports.get(service),
                retry=self.retry,
            )

        self._router = http("trigger-router")
        self._serving = http("model-serving")
        self._annotation = http("annotation")
        self._billing = http("billing")
        self.projects = Projects(self.dataset_client.api, admin_key)
        self.datasets = Datasets(self.dataset_client)
        self.items = Items(self.dataset_client)
        self.models = Models(self._serving)
        self.services = Services(self._serving, self._router)
        self.triggers = Triggers(self._router)
        self.executions = Executions(self._router)
        self.batches = Batches(self._router)
        self.pipelines = Pipelines(self._router)
        self.annotations = Annotations(self._annotation)
        self.tasks = Tasks(self._annotation)
        self.billing = Billing(self._billing)
        self.dead_letters = DeadLetters(
            {
                "dataset": self.dataset_client.api,
                "trigger-router": self._router,
                "model-serving": self._serving,
                "annotation": self._annotation,
                "billing": self._billing,
            }
        )

    @classmethod
    def from_settings(cls, settings: ClientSettings, **options: Any) -> Prelabel:
        """A client from :class:`ClientSettings` (its URLs, key and timeout)."""
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        return cls(
            settings.endpoints,
            settings.api_key.get_secret_value(),
            admin_key=admin,
            timeout_s=settings.timeout_s,
            **options,
        )

    @classmethod
    def from_env(cls, **options: Any) -> Prelabel:
        """A client from the ``PRELABEL_*`` environment variables."""
        return cls.from_settings(ClientSettings(), **options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection pool."""
        await self.dataset_client.aclose()
        for http in (self._router, self._serving, self._annotation, self._billing):
            await http.aclose()

    async def whoami(self) -> str:
        """The project id of the API key."""
        return await self.projects.whoami()

    def uploader(
        self, *, concurrency: int = 8, progress: UploadProgress | None = None, **options: Any
    ) -> Uploader:
        """An :class:`Uploader` over this client's dataset service (it retries whole
        uploads itself, with this client's policy)."""
        return Uploader(
            self.dataset_client.without_retry(),
            concurrency=concurrency,
            retry=self.retry,
            progress=progress,
            **options,
        )
