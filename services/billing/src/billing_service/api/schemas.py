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
