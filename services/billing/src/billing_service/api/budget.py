"""Routes of the project's budget: read, set, top up."""

from __future__ import annotations

from fastapi import APIRouter

from billing_service.api.dependencies import Project, Repo
from billing_service.api.schemas import AmountIn, BudgetIn, BudgetOut
from billing_service.usecases import budgets

router = APIRouter(tags=["budget"])


@router.get("/budget")
async def get_budget(project: Project, repository: Repo) -> BudgetOut:
    """The budget, what was spent up to now and whether it is exhausted."""
    return BudgetOut.model_validate(await budgets.budget(repository, project))


@router.put("/budget")
async def set_budget(body: BudgetIn, project: Project, repository: Repo) -> BudgetOut:
    """Set the budget (null: unlimited)."""
    return BudgetOut.model_validate(await budgets.set_budget(repository, project, body.amount))


@router.post("/budget/top-up")
async def top_up(body: AmountIn, project: Project, repository: Repo) -> BudgetOut:
    """Add to the budget; an exhausted budget back above its spending emits
    ``budget.restored.v1``."""
    return BudgetOut.model_validate(await budgets.top_up(repository, project, body.amount))
