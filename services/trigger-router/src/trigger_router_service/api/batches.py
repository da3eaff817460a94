"""Batch predict routes: run a model service on picked items now, follow and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from trigger_router_service import metrics
from trigger_router_service.api.dependencies import (
    Project,
    Repo,
    check_service,
    datasets,
    settings_of,
)
from trigger_router_service.api.schemas import PredictIn
from trigger_router_service.domain.batches import Batch
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.triggers import compile_filter

router = APIRouter()


def validate_filter(filter_: dict[str, Any], *, max_depth: int) -> None:
    """Reject a bad filter here, with the router's message, before asking the dataset."""
    compile_filter(filter_, max_depth=max_depth)


@router.post("/services/{service_id}/predict", status_code=201, tags=["batches"])
async def predict(
    request: Request,
    service_id: str,
    body: PredictIn,
    project: Project,
    repository: Repo,
    authorization: Annotated[str | None, Header()] = None,
) -> Batch:
    """Run the service on the picked items now: one execution per item, one batch.

    By default an item this service's model version already predicted successfully is
    skipped (no execution; counted in the batch's `counts.skipped`). "Already predicted"
    is decided from the router's own executions ledger: a `success` execution of the item
    in this project, from a trigger, a batch or a pipeline predict node, by this service or
    by another service of the project deployed from the same installed model version
    (`model_id`). Failed, cancelled and unfinished executions do not count. With
    `"force": true` every picked item is predicted again."""
    await check_service(repository, project, service_id)
    settings = settings_of(request)
    client = datasets(request)
    # The project dependency already checked this key; the dataset service sees it too.
    key = authorization or ""
    if body.item_ids is not None:
        ids = list(dict.fromkeys(body.item_ids))
        if len(ids) > settings.batch_max_items:
            raise RouterError(f"a batch takes at most {settings.batch_max_items} items")
        items = await client.items_by_id(key, ids)
        selection: dict[str, Any] = {"item_ids": ids}
    else:
        assert body.dataset_id is not None
        filter_ = body.filter or {}
        validate_filter(filter_, max_depth=settings.dql_max_depth)
        items = await client.query(key, body.dataset_id, filter_, settings.batch_max_items)
        selection = {"dataset_id": body.dataset_id, "filter": filter_}
    batch = await repository.create_batch(project, service_id, selection, items, force=body.force)
    for status, count in batch.counts.items():
        if count and status != "skipped":
            metrics.EXECUTIONS.labels(status).inc(count)
    metrics.PREDICT_REQUESTS.labels("batch").inc(batch.counts.get("queued", 0))
    return batch


@router.get("/batches", tags=["batches"])
async def list_batches(project: Project, repository: Repo) -> list[Batch]:
    """The project's latest batches with their progress."""
    return await repository.list_batches(project)


@router.get("/batches/{batch_id}", tags=["batches"])
async def get_batch(batch_id: str, project: Project, repository: Repo) -> Batch:
    """One batch: executions per status and progress."""
    return await repository.get_batch(project, batch_id)


@router.post("/batches/{batch_id}/cancel", tags=["batches"])
async def cancel_batch(batch_id: str, project: Project, repository: Repo) -> Batch:
    """Cancel every execution of the batch that has not finished (each announced as
    `execution.cancelled.v1`, as a single cancel is)."""
    batch, cancelled = await repository.cancel_batch(project, batch_id)
    if cancelled:
        metrics.EXECUTIONS.labels("cancelled").inc(cancelled)
    return batch
