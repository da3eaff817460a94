"""Routes of the project's budget: read, set, top up.

A project's own key may give itself a budget up to ``BILLING_MAX_BUDGET`` (10,000 by
default; 403 beyond it, for an unlimited budget too); the operator's admin key sets any
project's budget to anything under ``/projects/{project_id}/budget``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from billing_service.api.dependencies import Admin, Project, Repo, ServiceSettings
from billing_service.api.schemas import AmountIn, BudgetIn, BudgetOut
from billing_service.usecases import budgets

router = APIRouter(tags=["budget"])

NEEDS_ADMIN: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "Beyond what a project's own key may set: the admin key's route does it.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
}


@router.get("/budget")
async def get_budget(project: Project, repository: Repo) -> BudgetOut:
    """The budget, what was spent up to now and whether it is exhausted."""
    return BudgetOut.model_validate(await budgets.budget(repository, project))


@router.put("/budget", responses=NEEDS_ADMIN)
async def set_budget(
    body: BudgetIn, project: Project, repository: Repo, settings: ServiceSettings
) -> BudgetOut:
    """Set the budget, at most the configured maximum (null, unlimited, or more: 403,
    the admin key's route does it)."""
    view = await budgets.set_budget(
        repository, project, body.amount, max_budget=settings.max_budget
    )
    return BudgetOut.model_validate(view)


@router.post("/budget/top-up", responses=NEEDS_ADMIN)
async def top_up(
    body: AmountIn, project: Project, repository: Repo, settings: ServiceSettings
) -> BudgetOut:
    """Add to the budget, up to the configured maximum (past it: 403); an exhausted budget
    back above its spending emits ``budget.restored.v1``."""
    view = await budgets.top_up(repository, project, body.amount, max_budget=settings.max_budget)
    return BudgetOut.model_validate(view)


ProjectId = Annotated[str, Path(min_length=1, max_length=100)]


@router.put("/projects/{project_id}/budget", dependencies=[Admin])
async def set_project_budget(project_id: ProjectId, body: BudgetIn, repository: Repo) -> BudgetOut:
    """Operator: set any project's budget to any amount (null: unlimited)."""
    return BudgetOut.model_validate(await budgets.set_budget(repository, project_id, body.amount))


@router.post("/projects/{project_id}/budget/top-up", dependencies=[Admin])
async def top_up_project(project_id: ProjectId, body: AmountIn, repository: Repo) -> BudgetOut:
    """Operator: add any amount to a project's budget."""
    return BudgetOut.model_validate(await budgets.top_up(repository, project_id, body.amount))
