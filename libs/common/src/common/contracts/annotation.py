"""Contracts published by the annotation service."""

from __future__ import annotations

from typing import Literal

from common.contracts.base import Contract
from common.contracts.model_serving import AnnotationType
from common.topology import ANNOTATION


class AnnotationCreated(Contract):
    """An annotation was stored (from a model or a person)."""

    routing_key = "annotation.created.v1"
    producer = ANNOTATION

    annotation_id: str
    """Annotation id."""
    project_id: str
    """Owning project."""
    dataset_id: str
    """Item's dataset."""
    item_id: str
    """Annotated item."""
    type: AnnotationType
    """Geometry type."""
    label: str
    """Label."""
    source: Literal["model", "human"]
    """Who made it."""
    execution_id: str | None = None
    """Execution that produced it (model annotations)."""


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
