"""Request and response bodies of the HTTP API (entities come from the domain)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trigger_router_service.domain.executions import Execution
from trigger_router_service.domain.triggers import TriggerSpec


class TriggerIn(BaseModel):
    """A new trigger (Dataloop's shape)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    active: bool = True
    spec: TriggerSpec


class TriggerPatch(BaseModel):
    """A change to a trigger; only the fields given change (``spec`` is replaced whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None
    spec: TriggerSpec | None = None


class ExecutionPage(BaseModel):
    """One page of executions, newest first."""

    items: list[Execution]
    total_count: int
    page: int
    page_size: int
    has_next: bool


class RerunResult(BaseModel):
    """Executions a bulk rerun started again."""

    rerun: int
    execution_ids: list[str]


class PredictIn(BaseModel):
    """Items to run a model service on now: ids, or a dataset and a DQL filter."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] | None = Field(default=None, min_length=1)
    dataset_id: str | None = None
    filter: dict[str, Any] | None = Field(
        default=None, description="DQL filter over the dataset's items ({} = every item)."
    )
    force: bool = Field(
        default=False,
        description=(
            "Predict again the items this model version already predicted successfully "
            "(skipped and counted as `skipped` by default)."
        ),
    )

    @model_validator(mode="after")
    def _one_selection(self) -> PredictIn:
        if (self.item_ids is None) == (self.dataset_id is None):
            raise ValueError("give either item_ids or dataset_id (with an optional filter)")
        if self.item_ids is not None and self.filter is not None:
            raise ValueError("filter goes with dataset_id, not with item_ids")
        return self
