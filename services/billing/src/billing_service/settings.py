"""Configuration of the billing service (environment variables prefixed BILLING_)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from common.settings import AuthSettingsMixin, BaseServiceSettings


class Settings(BaseServiceSettings, AuthSettingsMixin):
    """billing settings; ``BILLING_AMQP_URL`` and ``BILLING_DATABASE_URL`` are required."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    http_port: int = Field(default=8085, ge=1, le=65535, description="HTTP API port.")
    db_schema: str = Field(default="billing", description="PostgreSQL schema of this service.")
    rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "cpu-small": Decimal("0.0001"),
            "cpu-large": Decimal("0.0004"),
            "gpu-t4": Decimal("0.0010"),
        },
        description=(
            "Price per replica-second by instance type, as JSON with string amounts, e.g. "
            '{"cpu-small": "0.0001", "gpu-t4": "0.0010"}. Unknown types pay the highest rate.'
        ),
    )
    default_budget: Decimal | None = Field(
        default=None,
        description="Budget of a project that never set one (empty: unlimited).",
    )
    max_budget: Decimal | None = Field(
        default=Decimal("10000"),
        ge=0,
        description=(
            "Largest budget a project's own API key may give itself (currency units); a "
            "higher or unlimited budget, or a top-up past it, needs the admin key (empty: "
            "no bound, any project key may set any budget)."
        ),
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description=(
            "The operator's key for /projects/{project_id}/budget (any amount, unlimited "
            "too); empty: those routes answer 401."
        ),
    )
    charge_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often running replicas are charged."
    )
    event_prefetch: int = Field(
        default=32, ge=1, description="Replica and review events one replica handles at once."
    )
    prediction_prefetch: int = Field(
        default=256, ge=1, description="Predictions one replica holds unacknowledged."
    )
    prediction_batch_max: int = Field(
        default=128, ge=1, description="Most predictions counted in one statement."
    )

    @field_validator("rates")
    @classmethod
    def _rates_not_negative(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [name for name, rate in rates.items() if not rate.is_finite() or rate < 0]
        if bad:
            raise ValueError(f"rates must be finite and >= 0: {', '.join(bad)}")
        if not rates:
            raise ValueError("at least one instance type rate is needed")
        return rates
