"""Request and answer bodies of the billing API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class AmountIn(BaseModel):
    """A money amount."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(description='Currency units, e.g. "25.00".')


class BudgetIn(BaseModel):
    """A new budget; ``null`` makes it unlimited."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal | None = Field(description="Currency units, or null for unlimited.")


class BudgetOut(BaseModel):
    """A project's automation budget as of now."""

    model_config = ConfigDict(from_attributes=True)

    project_id: str
    budget: Decimal | None
    spent: Decimal
    remaining: Decimal | None
    exhausted: bool
    charged_at: datetime | None
    exhausted_at: datetime | None


class UsageRow(BaseModel):
    """Runtime, cost and predictions of one service on one UTC day."""

    model_config = ConfigDict(from_attributes=True)

    service_id: str
    day: date
    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class UsageTotal(BaseModel):
    """Totals over the rows."""

    model_config = ConfigDict(from_attributes=True)

    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class UsageOut(BaseModel):
    """Usage of a project over a range of UTC days."""

    model_config = ConfigDict(from_attributes=True)

    project_id: str
    since: date
    until: date
    rows: list[UsageRow]
    total: UsageTotal


class ReplicaUsage(BaseModel):
    """One replica's metered runtime within the range."""

    model_config = ConfigDict(from_attributes=True)

    replica_id: str
    service_id: str
    instance_type: str
    rate: Decimal
    started_at: datetime | None
    stopped_at: datetime | None
    running: bool
    runtime_seconds: Decimal
    cost: Decimal
    days: dict[date, Decimal]


class BurnRateOut(BaseModel):
    """What the project's running replicas cost right now."""

    model_config = ConfigDict(from_attributes=True)

    project_id: str
    running_replicas: int
    per_second: Decimal
    per_hour: Decimal
    seconds_left: Decimal | None = Field(
        description="Until the budget is spent at this rate (null: unlimited or not burning)."
    )


class ModelVersionOut(BaseModel):
    """A model as its predictions name it."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    model_id: str
    version: str


class ModelUsageOut(BaseModel):
    """What one model version of one model service cost and what people accepted."""

    model_config = ConfigDict(from_attributes=True)

    service_id: str | None = Field(description="Model service that ran the model.")
    model: ModelVersionOut | None = Field(
        description="Model version (null: runtime of a service that never predicted)."
    )
    runtime_seconds: Decimal = Field(description="Replica-seconds credited to this version.")
    cost: Decimal = Field(description="Their runtime cost.")
    predictions: int = Field(description="Predictions that finished in the window.")
    reviewed: int = Field(description="Task items decided (the latest decision per item).")
    accepted_unchanged: int = Field(
        description="Approved by a person with every model annotation kept."
    )
    auto_accepted: int = Field(description="Accepted by a pipeline's confidence edge.")
    acceptance_rate: float | None = Field(
        description="accepted_unchanged / decisions by people (null: none yet)."
    )
    auto_accepted_share: float | None = Field(
        description="auto_accepted / reviewed (null: nothing reviewed)."
    )
    cost_per_accepted_label: Decimal | None = Field(
        description="cost / accepted_unchanged (null when no prediction was accepted unchanged)."
    )


class ModelUsageReportOut(BaseModel):
    """Figures per model version within a window."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    project_id: str
    start: datetime | None = Field(serialization_alias="from", description="Window start.")
    end: datetime = Field(serialization_alias="to", description="Window end (excluded).")
    models: list[ModelUsageOut]
