"""Labeling tasks: the list with progress, and review one item at a time with the
model's annotations over the image: approve, correct (labels, OCR text, delete a box,
draw a box), discard, next (keyboard: a, c, d, n; b draws a box)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from console_service.domain import FormError, corrections_from_form, shapes_of
from console_service.web import Client, redirect, render
from prelabel_client.errors import ValidationError
from prelabel_client.models import Correction

router = APIRouter()

REVIEWER = "console"


@router.get("/tasks")
async def tasks(request: Request, client: Client) -> Response:
    found, datasets = await asyncio.gather(client.tasks.list(), client.datasets.list())
    names = {d.id: d.name for d in datasets}
    return render(request, "tasks.html", tasks=found, datasets=datasets, names=names, error=None)


@router.post("/tasks")
async def create_task(
    request: Request,
    client: Client,
    name: Annotated[str, Form(max_length=200)],
    dataset_id: Annotated[str, Form(max_length=200)],
) -> Response:
    try:
        task = await client.tasks.create(name.strip(), dataset_id)
    except ValidationError as exc:
        found, datasets = await asyncio.gather(client.tasks.list(), client.datasets.list())
        names = {d.id: d.name for d in datasets}
        return render(
            request,
            "tasks.html",
            400,
            tasks=found,
            datasets=datasets,
            names=names,
            error=exc.message,
        )
    return redirect(request, f"/tasks/{task.id}/review")


@router.get("/tasks/{task_id}/review")
async def review_page(
    request: Request,
    client: Client,
    task_id: str,
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    task, progress, acceptance = await asyncio.gather(
        client.tasks.get(task_id), client.tasks.progress(task_id), client.tasks.acceptance(task_id)
    )
    page = await client.tasks.items(task_id, status="pending-review", limit=1, offset=skip)
    if not page.items and skip > 0 and page.total > 0:
        return redirect(request, f"/tasks/{task_id}/review")  # skipped past the end: start over
    current = page.items[0] if page.items else None
    shapes = shapes_of(current.annotations) if current else []
    return render(
        request, "review.html", task=task, progress=progress, acceptance=acceptance,
        current=current, shapes=shapes, skip=skip, pending=page.total, error=None,
    )  # fmt: skip


@router.post("/tasks/{task_id}/items/{item_id}/review")
async def review(
    request: Request,
    client: Client,
    task_id: str,
    item_id: str,
    action: Annotated[str, Form(max_length=20)],
    skip: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
) -> Response:
    if action == "approve":
        await client.tasks.review(task_id, item_id, "approve", reviewer=REVIEWER)
    elif action == "correct":
        annotations = await client.annotations.list(item_id=item_id)
        current = {shape.id: shape for shape in shapes_of(annotations)}
        fields = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        edits = [Correction.model_validate(c) for c in corrections_from_form(current, fields)]
        await client.tasks.review(task_id, item_id, "correct", reviewer=REVIEWER, corrections=edits)
    elif action == "discard":
        await client.tasks.review(task_id, item_id, "discard", reviewer=REVIEWER)
    else:
        raise FormError("the review action is approve, correct or discard")
    return redirect(request, f"/tasks/{task_id}/review?skip={skip}")
