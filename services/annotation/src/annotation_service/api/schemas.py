"""Request bodies of the annotation API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from annotation_service import domain
from common.contracts.model_serving import AnnotationType


class AnnotationIn(BaseModel):
    """An annotation made by a person."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1)
    type: AnnotationType
    label: str = Field(min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None
    author: str = Field(default="human", min_length=1, max_length=200)


class AnnotationPatch(BaseModel):
    """A change to an annotation; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    type: AnnotationType | None = None
    label: str | None = Field(default=None, min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None
    editor: str = Field(default="human", min_length=1, max_length=200)


class TaskIn(BaseModel):
    """A labeling task on a dataset.

    ``auto_add``: every item of the dataset enters the task when a prediction on it
    lands; ``auto_add_from_services``: only predictions of these model services.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    dataset_id: str = Field(min_length=1)
    pipeline_id: str | None = None
    auto_add: bool = False
    auto_add_from_services: list[str] = Field(default_factory=list, max_length=100)


class TaskItemsIn(BaseModel):
    """Items added to a task by hand."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] = Field(min_length=1, max_length=10_000)
    added_by: str = Field(default="human", min_length=1, max_length=200)


class Correction(BaseModel):
    """One annotation edit submitted with a review."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["create", "update", "delete"]
    annotation_id: str | None = None
    type: AnnotationType | None = None
    label: str | None = Field(default=None, min_length=1, max_length=500)
    coordinates: Any = None
    text: str | None = None

    @model_validator(mode="after")
    def _fits_op(self) -> Correction:
        if self.op == "create" and (self.type is None or self.label is None):
            raise ValueError("a 'create' correction needs type and label")
        if self.op != "create" and not self.annotation_id:
            raise ValueError(f"an {self.op!r} correction needs annotation_id")
        return self

    def as_change(self) -> dict[str, Any]:
        """The correction as the repository applies it (only the fields given)."""
        return self.model_dump(exclude_unset=True)


class ReviewIn(BaseModel):
    """A reviewer's decision on a task item."""

    model_config = ConfigDict(extra="forbid")

    action: domain.ReviewAction
    reviewer: str = Field(min_length=1, max_length=200)
    corrections: list[Correction] = Field(default_factory=list, max_length=1000)


def acceptance_view(rows: list[domain.Acceptance]) -> list[dict[str, Any]]:
    """Acceptance per model version as the API shows it."""
    return [
        {
            "model": {
                "name": a.model.name,
                "model_id": a.model.model_id,
                "version": a.model.version,
            },
            "reviewed": a.reviewed,
            "approved": a.approved,
            "corrected": a.corrected,
            "discarded": a.discarded,
            "acceptance_rate": a.rate,
            "auto_accepted": a.auto_accepted,
            "auto_accepted_share": a.auto_accepted_share,
        }
        for a in rows
    ]
