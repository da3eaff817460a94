"""Pipelines: list, create from a form, the graph with live counts per node, start/stop,
failed items with the node and the reason."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console_service.domain import ACTIONS, FormError, PipelineForm, layout, parse_filter
from console_service.web import Client, redirect, render
from prelabel_client.errors import ApiError, ValidationError
from prelabel_client.sdk import Prelabel

router = APIRouter()


async def _list_page(
    request: Request, client: Prelabel, status_code: int = 200, error: str | None = None
) -> Response:
    pipelines, datasets, services, tasks = await asyncio.gather(
        client.pipelines.list(), client.datasets.list(), client.services.list(), client.tasks.list()
    )
    return render(
        request, "pipelines.html", status_code, pipelines=pipelines, datasets=datasets,
        services=[s for s in services if s.status == "ready"], tasks=tasks, actions=ACTIONS,
        error=error,
    )  # fmt: skip


@router.get("/pipelines")
async def pipelines(request: Request, client: Client) -> Response:
    return await _list_page(request, client)


@router.post("/pipelines")
async def create_pipeline(
    request: Request,
    client: Client,
    name: Annotated[str, Form(max_length=200)],
    dataset_id: Annotated[str, Form(max_length=200)] = "",
    service_id: Annotated[str, Form(max_length=200)] = "",
    task_id: Annotated[str, Form(max_length=200)] = "",
    new_task: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[list[str] | None, Form()] = None,
    execution_mode: Annotated[str, Form(max_length=10)] = "Once",
    filter: Annotated[str, Form(max_length=20_000)] = "",
    min_confidence: Annotated[str, Form(max_length=20)] = "",
    start: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    try:
        threshold = float(min_confidence) if min_confidence.strip() else None
    except ValueError:
        return await _list_page(request, client, 400, "the confidence threshold must be a number")
    try:
        form = PipelineForm(
            name=name,
            dataset_id=dataset_id,
            service_id=service_id,
            task_id=task_id or ("new" if new_task.strip() else ""),
            actions=tuple(action or ()),
            execution_mode=execution_mode,
            filter=parse_filter(filter),
            min_confidence=threshold,
        )
        form.definition()  # refuse a bad form before creating its task
        if not task_id:
            task = await client.tasks.create(new_task.strip(), dataset_id)
            form = PipelineForm(**{**form.__dict__, "task_id": task.id})
        pipeline = await client.pipelines.create(form.definition())
        if start:
            await client.pipelines.start(pipeline.id)
    except (FormError, ValidationError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        return await _list_page(request, client, 400, message)
    return redirect(request, f"/pipelines/{pipeline.id}")


async def _detail(client: Prelabel, pipeline_id: str) -> dict[str, Any]:
    pipeline, failed = await asyncio.gather(
        client.pipelines.get(pipeline_id),
        client.pipelines.executions(pipeline_id, status="failed", page_size=50),
    )
    nodes, edges, width, height = layout(pipeline.definition, pipeline.counts)
    return {
        "pipeline": pipeline, "failed": failed.items, "failed_total": failed.total_count,
        "nodes": nodes, "edges": edges, "width": width, "height": height,
    }  # fmt: skip


@router.get("/pipelines/{pipeline_id}")
async def pipeline_page(request: Request, client: Client, pipeline_id: str) -> Response:
    return render(request, "pipeline.html", **await _detail(client, pipeline_id))


@router.get("/pipelines/{pipeline_id}/live")
async def pipeline_live(request: Request, client: Client, pipeline_id: str) -> Response:
    return render(request, "_pipeline_live.html", **await _detail(client, pipeline_id))


@router.post("/pipelines/{pipeline_id}/start")
async def start_pipeline(request: Request, client: Client, pipeline_id: str) -> Response:
    await client.pipelines.start(pipeline_id)
    return redirect(request, f"/pipelines/{pipeline_id}")


@router.post("/pipelines/{pipeline_id}/stop")
async def stop_pipeline(request: Request, client: Client, pipeline_id: str) -> Response:
    await client.pipelines.stop(pipeline_id)
    return redirect(request, f"/pipelines/{pipeline_id}")
