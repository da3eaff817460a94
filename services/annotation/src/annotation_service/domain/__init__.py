"""Annotation rules with no I/O: geometry, annotation rows and ids, the events and their
ids, task rules, review outcomes, acceptance and the export shapes.

The names of the submodules are re-exported here (``domain.normalize_geometry``).
"""

from __future__ import annotations

from annotation_service.domain.annotations import (
    NewAnnotation,
    Predicted,
    Source,
    annotation_id,
    annotations_from_command,
    annotations_from_prediction,
    command_origin,
    human_annotation_id,
    model_annotations,
)
from annotation_service.domain.errors import AnnotationError, ConflictError, NotFoundError
from annotation_service.domain.events import (
    SOURCE,
    SerializedEvent,
    auto_accepted_event_id,
    created_event,
    created_event_id,
    pipeline_added_event_id,
    task_item_added_event_id,
)
from annotation_service.domain.export import CocoExport, ExportAnnotation, ImageInfo, to_coco
from annotation_service.domain.geometry import (
    ANNOTATION_TYPES,
    bounding_box,
    normalize_geometry,
    polygon_area,
)
from annotation_service.domain.tasks import (
    APPROVED,
    ENTRY_STATUSES,
    PENDING,
    REVIEWED,
    STATUSES,
    Acceptance,
    ModelKey,
    ReviewAction,
    ReviewedStatus,
    TaskItemStatus,
    TaskRule,
    acceptance_by_model,
    check_command,
    entry_status,
    pipeline_reviewer,
    progress,
    review_outcome,
)

__all__ = [
    "ANNOTATION_TYPES",
    "APPROVED",
    "ENTRY_STATUSES",
    "PENDING",
    "REVIEWED",
    "SOURCE",
    "STATUSES",
    "Acceptance",
    "AnnotationError",
    "CocoExport",
    "ConflictError",
    "ExportAnnotation",
    "ImageInfo",
    "ModelKey",
    "NewAnnotation",
    "NotFoundError",
    "Predicted",
    "ReviewAction",
    "ReviewedStatus",
    "SerializedEvent",
    "Source",
    "TaskItemStatus",
    "TaskRule",
    "acceptance_by_model",
    "annotation_id",
    "annotations_from_command",
    "annotations_from_prediction",
    "auto_accepted_event_id",
    "bounding_box",
    "check_command",
    "command_origin",
    "created_event",
    "created_event_id",
    "entry_status",
    "human_annotation_id",
    "model_annotations",
    "normalize_geometry",
    "pipeline_added_event_id",
    "pipeline_reviewer",
    "polygon_area",
    "progress",
    "review_outcome",
    "task_item_added_event_id",
    "to_coco",
]
