"""Annotation rows: ids, the rows a prediction (or a pipeline's command) stores, and the
model's original kept beside human edits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from annotation_service.domain.errors import AnnotationError
from annotation_service.domain.geometry import normalize_geometry
from common.contracts import AddTaskItem, ModelRef, PredictedAnnotation, PredictionCompleted
from common.contracts.trigger_router import Origin
from common.ids import new_id

Source = Literal["model", "human"]


def annotation_id(execution_id: str, index: int) -> str:
    """The id of a model annotation: a function of (execution, index), so a redelivered
    prediction maps onto the same rows and the same ``annotation.created`` event ids."""
    digest = hashlib.sha256(f"{execution_id}\x00{index}".encode()).hexdigest()
    return f"ann_{digest[:24]}"


def human_annotation_id() -> str:
    """The id of an annotation a person made (random)."""
    return new_id("ann", hex_chars=24)


@dataclass(slots=True)
class NewAnnotation:
    """A row to store."""

    id: str
    project_id: str
    dataset_id: str
    item_id: str
    type: str
    label: str
    coordinates: Any
    confidence: float | None
    text: str | None
    source: Source
    execution_id: str | None
    index: int | None
    service_id: str | None
    model_name: str | None
    model_id: str | None
    model_version: str | None
    origin: Origin | None = None
    """Which way (trigger, batch, pipeline) produced a model annotation."""
    attempt: int | None = None
    """The attempt of the prediction that produced a model annotation, when known."""

    def original(self) -> dict[str, Any]:
        """What the model said, kept unchanged beside later human edits."""
        return {
            "type": self.type,
            "label": self.label,
            "coordinates": self.coordinates,
            "confidence": self.confidence,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Predicted:
    """What one execution produced, from ``prediction.completed.v1`` or ``add_task_item.v1``."""

    project_id: str
    dataset_id: str
    item_id: str
    execution_id: str
    service_id: str
    model: ModelRef
    annotations: Sequence[PredictedAnnotation]
    origin: Origin | None
    attempt: int | None = None


def model_annotations(predicted: Predicted) -> list[NewAnnotation]:
    """The rows an execution's prediction stores, one per predicted annotation.

    Raises :class:`AnnotationError` on geometry that does not fit its type, so the
    message is dead-lettered with the reason instead of storing unusable shapes.
    """
    rows = []
    for index, annotation in enumerate(predicted.annotations):
        try:
            coordinates = normalize_geometry(annotation.type, annotation.coordinates)
        except AnnotationError as exc:
            raise AnnotationError(f"annotation {index}: {exc.message}") from exc
        rows.append(
            NewAnnotation(
                id=annotation_id(predicted.execution_id, index),
                project_id=predicted.project_id,
                dataset_id=predicted.dataset_id,
                item_id=predicted.item_id,
                type=annotation.type,
                label=annotation.label,
                coordinates=coordinates,
                confidence=annotation.confidence,
                text=annotation.text,
                source="model",
                execution_id=predicted.execution_id,
                index=index,
                service_id=predicted.service_id,
                model_name=predicted.model.name,
                model_id=predicted.model.model_id,
                model_version=predicted.model.version,
                origin=predicted.origin,
                attempt=predicted.attempt,
            )
        )
    return rows


def annotations_from_prediction(prediction: PredictionCompleted) -> list[NewAnnotation]:
    """The rows a ``prediction.completed.v1`` stores (see :func:`model_annotations`)."""
    return model_annotations(
        Predicted(
            prediction.project_id,
            prediction.dataset_id,
            prediction.item_id,
            prediction.execution_id,
            prediction.service_id,
            prediction.model,
            prediction.annotations,
            prediction.origin,
            prediction.attempt,
        )
    )


def command_origin(command: AddTaskItem) -> Origin:
    """The origin of annotations a pipeline's command brings: the pipeline execution (the
    predict node is filled in by its ``prediction.completed.v1``, which names it)."""
    return Origin(
        way="pipeline", id=command.pipeline_id, pipeline_execution_id=command.pipeline_execution_id
    )


def annotations_from_command(command: AddTaskItem) -> list[NewAnnotation]:
    """The rows an ``add_task_item.v1`` stores: the same rows (same ids) as its
    prediction's, so whichever arrives first stores them and the other adds nothing."""
    if not command.annotations:
        return []
    if command.execution_id is None or command.service_id is None or command.model is None:
        raise AnnotationError(
            "add_task_item.v1 carries annotations without execution_id, service_id and model"
        )
    return model_annotations(
        Predicted(
            command.project_id,
            command.dataset_id,
            command.item_id,
            command.execution_id,
            command.service_id,
            command.model,
            command.annotations,
            command_origin(command),
        )
    )
