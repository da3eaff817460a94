"""Contracts published by the annotation service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.contracts.model_serving import AnnotationType
from common.topology import ANNOTATION


class CreatedAnnotation(BaseModel):
    """One annotation in an ``annotation.created.v2`` event."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    annotation_id: str
    """Annotation id."""
    type: AnnotationType
    """Geometry type."""
    label: str
    """Label."""


class AnnotationsCreated(Contract):
    """Annotations were stored on an item: all those of one prediction (``source: model``,
    one event per execution, however many boxes it holds) or one a person made
    (``source: human``). Fetch the full annotations from the API by id."""

    routing_key = "annotation.created.v2"
    producer = ANNOTATION

    project_id: str
    """Owning project."""
    dataset_id: str
    """Item's dataset."""
    item_id: str
    """Annotated item."""
    source: Literal["model", "human"]
    """Who made them."""
    execution_id: str | None = None
    """Execution that produced them (model annotations)."""
    annotations: list[CreatedAnnotation] = Field(min_length=1)
    """The annotations stored, in prediction order."""


class TaskItemAdded(Contract):
    """An item entered a labeling task for review."""

    routing_key = "task_item.added.v1"
    producer = ANNOTATION

    task_id: str
    """Labeling task."""
    project_id: str
    """Owning project."""
    item_id: str
    """Item to review."""


class TaskItemReviewed(Contract):
    """A reviewer decided on a task item."""

    routing_key = "task_item.reviewed.v1"
    producer = ANNOTATION

    task_id: str
    """Labeling task."""
    project_id: str
    """Owning project."""
    item_id: str
    """Reviewed item."""
    status: Literal["approved", "corrected", "discarded"]
    """Outcome."""
    reviewer: str
    """Who reviewed."""
