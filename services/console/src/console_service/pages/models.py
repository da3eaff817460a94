"""Models: the catalog (install), the project's models (deploy with scaling settings),
model services with replicas, queue and cold starts (live), and their triggers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from console_service.domain import ACTIONS, FormError, parse_filter
from console_service.web import Client, redirect, render
from prelabel_client.errors import ApiError, NotFoundError, ValidationError
from prelabel_client.models import Execution, ModelService, Scaling, ServiceScaling, TriggerSpec
from prelabel_client.sdk import Prelabel

router = APIRouter()

RECENT_EXECUTIONS = 20


@dataclass(frozen=True)
class ServiceView:
    """A model service with what the autoscaler and the ledger say of it."""

    service: ModelService
    scaling: ServiceScaling | None
    recent: list[Execution]

    @property
    def cold_starts(self) -> int:
        """Cold starts among the recent executions."""
        return sum(1 for e in self.recent if e.cold_start)

    @property
    def replicas(self) -> int:
        """Replicas running now."""
        if self.scaling is not None:
            return self.scaling.running_replicas
        return len(self.service.replicas or [])


async def _view(client: Prelabel, service_id: str) -> ServiceView:
    async def scaling() -> ServiceScaling | None:
        try:
            return await client.services.scaling(service_id)
        except NotFoundError:
            return None  # the router learns of a new service from its deployed event

    service, known, recent = await asyncio.gather(
        client.services.get(service_id),
        scaling(),
        client.executions.list(service_id=service_id, page_size=RECENT_EXECUTIONS),
    )
    return ServiceView(service, known, list(recent.items))


async def _views(client: Prelabel) -> list[ServiceView]:
    services = await client.services.list()
    live = [s for s in services if s.status not in ("undeployed",)]
    return list(await asyncio.gather(*(_view(client, s.id) for s in live)))


@router.get("/models")
async def models(request: Request, client: Client) -> Response:
    catalog, installed, views = await asyncio.gather(
        client.models.catalog(), client.models.list(), _views(client)
    )
    return render(
        request, "models.html", catalog=catalog, models=installed, views=views, error=None
    )


@router.get("/models/services")
async def services_table(request: Request, client: Client) -> Response:
    return render(request, "_services.html", views=await _views(client))


@router.post("/models/install")
async def install(
    request: Request, client: Client, catalog_name: Annotated[str, Form(max_length=200)]
) -> Response:
    await client.models.install(catalog_name)
    return redirect(request, "/models")


MAX_ARCHIVE_BYTES = 200 * 1024 * 1024


@router.post("/models/push")
async def push(
    request: Request,
    client: Client,
    archive: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=200)],
    spec: Annotated[str, Form(max_length=100_000)],
    version: Annotated[str, Form(max_length=50)] = "1",
) -> Response:
    """Bring your own model: a Triton model directory as .tar.gz plus its spec (JSON)."""
    try:
        content = await archive.read(MAX_ARCHIVE_BYTES + 1)
        if len(content) > MAX_ARCHIVE_BYTES:
            raise FormError(f"the archive is larger than {MAX_ARCHIVE_BYTES} bytes")
        parsed = parse_filter(spec)  # a JSON object, with the same inline errors
        await client.models.push(content, parsed, name=name.strip(), version=version.strip() or "1")
    except (FormError, ValidationError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc).replace("filter", "spec")
        return await _models_page(request, client, 400, message)
    return redirect(request, "/models")


async def _models_page(
    request: Request, client: Prelabel, status_code: int = 200, error: str | None = None
) -> Response:
    catalog, installed, views = await asyncio.gather(
        client.models.catalog(), client.models.list(), _views(client)
    )
    return render(
        request, "models.html", status_code, catalog=catalog, models=installed, views=views,
        error=error,
    )  # fmt: skip


def _number(value: str, what: str, cast: type[int] | type[float]) -> Any:
    if not value.strip():
        return None
    try:
        return cast(value)
    except ValueError as exc:
        raise FormError(f"{what} must be a number") from exc


@router.post("/models/deploy")
async def deploy(
    request: Request,
    client: Client,
    model_id: Annotated[str, Form(max_length=200)],
    name: Annotated[str, Form(max_length=200)] = "",
    min_replicas: Annotated[str, Form(max_length=20)] = "0",
    max_replicas: Annotated[str, Form(max_length=20)] = "1",
    queue_per_replica: Annotated[str, Form(max_length=20)] = "",
    cooldown_seconds: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        scaling = Scaling(
            min_replicas=_number(min_replicas, "min replicas", int),
            max_replicas=_number(max_replicas, "max replicas", int),
            queue_per_replica=_number(queue_per_replica, "queue per replica", int),
            cooldown_seconds=_number(cooldown_seconds, "cooldown", float),
        )
        service = await client.services.deploy(model_id, name.strip() or None, scaling)
    except (FormError, ValidationError, ValueError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        return await _models_page(request, client, 400, message)
    return redirect(request, f"/services/{service.id}")


async def _service_page(
    request: Request,
    client: Prelabel,
    service_id: str,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    view, triggers, dead = await asyncio.gather(
        _view(client, service_id),
        client.triggers.list(service_id=service_id),
        client.services.dead_letters(service_id, limit=20),
    )
    return render(
        request, "service.html", status_code, view=view, triggers=triggers, dead_letters=dead,
        actions=ACTIONS, error=error,
    )  # fmt: skip


@router.get("/services/{service_id}")
async def service_page(request: Request, client: Client, service_id: str) -> Response:
    return await _service_page(request, client, service_id)


@router.get("/services/{service_id}/live")
async def service_live(request: Request, client: Client, service_id: str) -> Response:
    return render(request, "_service_live.html", view=await _view(client, service_id))


@router.post("/services/{service_id}/triggers")
async def add_trigger(
    request: Request,
    client: Client,
    service_id: str,
    name: Annotated[str, Form(max_length=200)],
    action: Annotated[list[str] | None, Form()] = None,
    execution_mode: Annotated[str, Form(max_length=10)] = "Once",
    filter: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    await client.services.get(service_id)  # 404 for another project's service
    try:
        actions = [a for a in (action or []) if a in ACTIONS]
        if not actions:
            raise FormError("pick at least one action")
        spec = TriggerSpec.model_validate(
            {
                "actions": actions,
                "execution_mode": execution_mode,
                "filter": parse_filter(filter),
                "operation": {"type": "predict", "service_id": service_id},
            }
        )
        await client.triggers.create(name.strip() or "trigger", spec)
    except (FormError, ValidationError, ValueError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        return await _service_page(request, client, service_id, 400, message)
    return redirect(request, f"/services/{service_id}")
