"""Scaling settings of a model service."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from model_serving_service.domain.errors import InvalidModelError
from model_serving_service.domain.specs import _Frozen, _validation_problems


class Scaling(_Frozen):
    """Scaling settings of a model service (see ARCHITECTURE.md, Scaling from zero)."""

    min_replicas: int = Field(default=0, ge=0, le=100)
    max_replicas: int = Field(default=1, ge=0, le=100)
    queue_per_replica: int = Field(default=10, ge=1, le=100_000)
    cooldown_seconds: float = Field(default=60.0, ge=0, le=86_400)
    concurrency: int = Field(default=4, ge=1, le=1024)
    drain_seconds: float = Field(default=30.0, ge=0, le=3600)
    instance_type: str = Field(default="cpu-small", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value):
            raise ValueError("instance_type: lowercase letters, digits, '.' and '-'")
        return value


def default_concurrency(max_batch_size: int) -> int:
    """Prefetch that lets one batch fill while the previous one runs."""
    return max(2, min(2 * max_batch_size, 256))


def merge_scaling(current: Scaling, changes: Mapping[str, Any]) -> Scaling:
    """``current`` with ``changes`` applied, validated as a whole."""
    try:
        return Scaling.model_validate({**current.model_dump(), **changes})
    except ValueError as exc:
        raise InvalidModelError(_validation_problems(exc)) from exc
