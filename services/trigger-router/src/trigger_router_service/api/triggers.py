"""Trigger routes: create, list, change, pause, resume, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request

from trigger_router_service.api.dependencies import Project, Repo, check_service, settings_of
from trigger_router_service.api.schemas import TriggerIn, TriggerPatch
from trigger_router_service.domain.triggers import Trigger, validate_spec

router = APIRouter()


@router.post("/triggers", status_code=201, tags=["triggers"])
async def create_trigger(
    request: Request, body: TriggerIn, project: Project, repository: Repo
) -> Trigger:
    """Create a trigger: the filter must parse and the service must exist in the project."""
    validate_spec(body.spec, max_depth=settings_of(request).dql_max_depth)
    await check_service(repository, project, body.spec.operation.service_id)
    return await repository.create_trigger(project, body.name, body.active, body.spec)


@router.get("/triggers", tags=["triggers"])
async def list_triggers(
    project: Project,
    repository: Repo,
    service_id: str | None = None,
    active: bool | None = None,
) -> list[Trigger]:
    """The project's triggers (optionally of one service, or only active/paused ones)."""
    return await repository.list_triggers(project, service_id, active)


@router.get("/triggers/{trigger_id}", tags=["triggers"])
async def get_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """One trigger."""
    return await repository.get_trigger(project, trigger_id)


@router.patch("/triggers/{trigger_id}", tags=["triggers"])
async def update_trigger(
    request: Request, trigger_id: str, body: TriggerPatch, project: Project, repository: Repo
) -> Trigger:
    """Change a trigger; the change applies to the next event, no restart needed.

    A failed trigger (its service went away) comes back only with a new ``spec`` whose
    service exists.
    """
    current = await repository.get_trigger(project, trigger_id)
    revive = False
    if body.spec is not None:
        validate_spec(body.spec, max_depth=settings_of(request).dql_max_depth)
        await check_service(repository, project, body.spec.operation.service_id)
        revive = current.status == "failed"
    return await repository.update_trigger(
        project, trigger_id, name=body.name, active=body.active, spec=body.spec, revive=revive
    )


@router.post("/triggers/{trigger_id}/pause", tags=["triggers"])
async def pause_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """Stop a trigger from firing (``active = false``)."""
    return await repository.update_trigger(project, trigger_id, active=False)


@router.post("/triggers/{trigger_id}/resume", tags=["triggers"])
async def resume_trigger(trigger_id: str, project: Project, repository: Repo) -> Trigger:
    """Let a paused trigger fire again; a failed one only if its service is back."""
    current = await repository.get_trigger(project, trigger_id)
    revive = False
    if current.status == "failed":
        await check_service(repository, project, current.spec.operation.service_id)
        revive = True
    return await repository.update_trigger(project, trigger_id, active=True, revive=revive)


@router.delete("/triggers/{trigger_id}", status_code=204, tags=["triggers"])
async def delete_trigger(trigger_id: str, project: Project, repository: Repo) -> None:
    """Delete a trigger (its executions stay in the ledger)."""
    await repository.delete_trigger(project, trigger_id)
