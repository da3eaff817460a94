"""Contracts published by the annotation service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.contracts.model_serving import AnnotationType, ModelRef, PredictedAnnotation
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


class AddTaskItem(Contract):
    """Command from a pipeline's task node: put an item into a labeling task, with the
    annotations of the prediction that led there.

    Idempotent on (``pipeline_execution_id``, ``node_id``): a redelivery or a rerun of
    the same pipeline execution adds nothing twice. The annotations are stored as the
    prediction's (idempotent on execution id and index, like ``prediction.completed.v1``),
    so the item reaches the task with them whichever message arrives first.
    """

    routing_key = "add_task_item.v1"
    producer = ANNOTATION
    kind = "command"

    project_id: str
    """Owning project; the task and the item must belong to it."""
    task_id: str
    """Labeling task (the node's config)."""
    dataset_id: str
    """The item's dataset; must be the task's."""
    item_id: str
    """Item to add."""
    pipeline_id: str
    """Pipeline that sent the command."""
    pipeline_execution_id: str
    """The item's way through the pipeline."""
    node_id: str
    """The task node."""
    execution_id: str | None = None
    """Predict execution whose annotations come along (none when no predict node ran)."""
    service_id: str | None = None
    """Model service of that execution."""
    model: ModelRef | None = None
    """Model of that execution."""
    annotations: list[PredictedAnnotation] = Field(default_factory=list, max_length=10_000)
    """The prediction's annotations."""
    auto_accept: bool = False
    """Recorded as accepted without review (a confidence edge's "done" path)."""


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
    pipeline_execution_id: str | None = None
    """The pipeline execution that added it (``add_task_item.v1``), if any."""
    node_id: str | None = None
    """The pipeline's task node, if any."""
    status: Literal["pending-review", "approved"] | None = None
    """Its review status on entry: ``approved`` when auto-accepted (absent: pending)."""
    auto_accepted: bool = False
    """Accepted without review by a confidence edge."""


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
    execution_id: str | None = None
    """The predict execution whose annotations were reviewed (none for items added by hand
    without a prediction)."""
    service_id: str | None = None
    """Model service of that execution."""
    model: ModelRef | None = None
    """Model (name, id, version) credited with the annotations."""
    accepted_unchanged: bool = False
    """``approved`` with every model annotation kept as predicted: the label was free."""
    auto_accepted: bool = False
    """Accepted by a pipeline's confidence edge, not by a person (``reviewer`` names the
    pipeline)."""
