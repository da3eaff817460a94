"""Annotation rules with no I/O: geometry checks, annotation ids, task rules, review
outcomes, acceptance rates and the COCO / JSON-lines export shapes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from common.contracts import PredictionCompleted
from common.contracts.model_serving import AnnotationType
from common.errors import ServiceError

TaskItemStatus = Literal["pending-review", "approved", "corrected", "discarded"]
ReviewedStatus = Literal["approved", "corrected", "discarded"]
ReviewAction = Literal["approve", "correct", "discard"]
Source = Literal["model", "human"]

PENDING: TaskItemStatus = "pending-review"
STATUSES: tuple[TaskItemStatus, ...] = ("pending-review", "approved", "corrected", "discarded")
ANNOTATION_TYPES: tuple[AnnotationType, ...] = (
    "box",
    "polygon",
    "point",
    "classification",
    "segmentation",
    "text",
)


class AnnotationError(ServiceError):
    """A request or message the service refuses, with the HTTP status it maps to."""

    status = 422


class NotFoundError(AnnotationError):
    """An id that does not exist in the caller's project."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found", 404)


# --------------------------------------------------------------------------- geometry


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise AnnotationError(f"{where}: coordinates must be finite")
    return number


def _point(value: Any, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise AnnotationError(f"{where}: expected a point [x, y], got {value!r}")
    return [_number(value[0], where), _number(value[1], where)]


_NUMBERS = (int, float)


def _fast_box(coordinates: Any) -> list[list[float]] | None:
    # Models send thousands of boxes a second: the common well-formed case skips the
    # general checks (which give the error messages) below.
    if type(coordinates) is not list or len(coordinates) != 2:
        return None
    p, q = coordinates
    if type(p) is not list or type(q) is not list or len(p) != 2 or len(q) != 2:
        return None
    x1, y1 = p
    x2, y2 = q
    if not (
        type(x1) in _NUMBERS
        and type(y1) in _NUMBERS
        and type(x2) in _NUMBERS
        and type(y2) in _NUMBERS
        and math.isfinite(x1 + y1 + x2 + y2)
    ):
        return None
    return [
        [float(min(x1, x2)), float(min(y1, y2))],
        [float(max(x1, x2)), float(max(y1, y2))],
    ]


def normalize_geometry(kind: str, coordinates: Any) -> Any:
    """Check ``coordinates`` for an annotation ``kind`` and return them normalized.

    box: ``[[x1, y1], [x2, y2]]`` (corners reordered so x1 <= x2, y1 <= y2);
    polygon: ``[[x, y], ...]`` with at least 3 points; point: ``[x, y]``;
    classification: no geometry (``None``); text: ``None``, a box (two corners) or the
    line's polygon (at least 3 points, as OCR models detect a line as a quadrilateral);
    segmentation: any JSON value (mask encodings differ by model).
    """
    if kind == "box":
        box = _fast_box(coordinates)
        if box is not None:
            return box
    if kind not in ANNOTATION_TYPES:
        raise AnnotationError(
            f"unknown annotation type {kind!r}; expected one of {ANNOTATION_TYPES}"
        )
    if kind == "text":
        if coordinates is None:
            return None
        if not isinstance(coordinates, list | tuple) or len(coordinates) < 2:
            raise AnnotationError(
                "text: coordinates must be null, a box [[x1, y1], [x2, y2]] "
                "or a polygon of at least 3 points [[x, y], ...]"
            )
        if len(coordinates) > 2:
            return [_point(p, "text") for p in coordinates]
    if kind in ("box", "text"):
        if not isinstance(coordinates, list | tuple) or len(coordinates) != 2:
            raise AnnotationError(f"{kind}: coordinates must be [[x1, y1], [x2, y2]]")
        (x1, y1), (x2, y2) = (_point(p, kind) for p in coordinates)
        return [[min(x1, x2), min(y1, y2)], [max(x1, x2), max(y1, y2)]]
    if kind == "polygon":
        if not isinstance(coordinates, list | tuple) or len(coordinates) < 3:
            raise AnnotationError("polygon: coordinates must be at least 3 points [[x, y], ...]")
        return [_point(p, "polygon") for p in coordinates]
    if kind == "point":
        return _point(coordinates, "point")
    if kind == "classification":
        if coordinates is not None:
            raise AnnotationError("classification: coordinates must be null")
        return None
    return coordinates


def polygon_area(points: Sequence[Sequence[float]]) -> float:
    """Area of a simple polygon (shoelace formula)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, [*points[1:], points[0]], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def bounding_box(points: Sequence[Sequence[float]]) -> list[float]:
    """COCO ``[x, y, width, height]`` of a set of points."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


# --------------------------------------------------------------------------- predictions


def annotation_id(execution_id: str, index: int) -> str:
    """The id of a model annotation: a function of (execution, index), so a redelivered
    prediction maps onto the same rows and the same ``annotation.created`` event ids."""
    digest = hashlib.sha256(f"{execution_id}\x00{index}".encode()).hexdigest()
    return f"ann_{digest[:24]}"


def created_event_id(key: str) -> str:
    """Event id of ``annotation.created.v2``: keyed by the execution for a prediction's
    annotations (all stored in one transaction), by the annotation for a person's."""
    return f"created:{key}"


def task_item_added_event_id(task_id: str, item_id: str) -> str:
    """Event id of ``task_item.added.v1``: an item enters a task at most once."""
    return f"task-item-added:{task_id}:{item_id}"


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

    def original(self) -> dict[str, Any]:
        """What the model said, kept unchanged beside later human edits."""
        return {
            "type": self.type,
            "label": self.label,
            "coordinates": self.coordinates,
            "confidence": self.confidence,
            "text": self.text,
        }


def annotations_from_prediction(prediction: PredictionCompleted) -> list[NewAnnotation]:
    """The rows a ``prediction.completed.v1`` stores, one per predicted annotation.

    Raises :class:`AnnotationError` on geometry that does not fit its type, so the
    message is dead-lettered with the reason instead of storing unusable shapes.
    """
    rows = []
    for index, predicted in enumerate(prediction.annotations):
        try:
            coordinates = normalize_geometry(predicted.type, predicted.coordinates)
        except AnnotationError as exc:
            raise AnnotationError(f"annotation {index}: {exc.message}") from exc
        rows.append(
            NewAnnotation(
                id=annotation_id(prediction.execution_id, index),
                project_id=prediction.project_id,
                dataset_id=prediction.dataset_id,
                item_id=prediction.item_id,
                type=predicted.type,
                label=predicted.label,
                coordinates=coordinates,
                confidence=predicted.confidence,
                text=predicted.text,
                source="model",
                execution_id=prediction.execution_id,
                index=index,
                service_id=prediction.service_id,
                model_name=prediction.model.name,
                model_id=prediction.model.model_id,
                model_version=prediction.model.version,
            )
        )
    return rows


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskRule:
    """Which predictions put their item into a task automatically."""

    task_id: str
    project_id: str
    dataset_id: str
    auto_add: bool = False
    auto_add_from_services: tuple[str, ...] = ()

    def accepts(self, prediction: PredictionCompleted) -> bool:
        """Whether ``prediction``'s item joins this task when the prediction lands."""
        if (prediction.project_id, prediction.dataset_id) != (self.project_id, self.dataset_id):
            return False
        return self.auto_add or prediction.service_id in self.auto_add_from_services


def review_outcome(
    action: ReviewAction, corrections: int, changed_since_added: bool
) -> ReviewedStatus:
    """The status a review gives an item.

    Approving an item whose annotations people already changed (through the
    annotation API since it entered the task) counts as ``corrected``: the
    acceptance rate measures model output accepted *without change*.
    """
    if action == "discard":
        return "discarded"
    if action == "correct":
        if corrections == 0 and not changed_since_added:
            raise AnnotationError("action 'correct' needs at least one correction")
        return "corrected"
    if corrections:
        raise AnnotationError("action 'approve' takes no corrections; use 'correct'")
    return "corrected" if changed_since_added else "approved"


@dataclass(frozen=True)
class ModelKey:
    """A model version, the unit acceptance is measured for."""

    name: str | None
    model_id: str | None
    version: str | None


@dataclass
class Acceptance:
    """Review outcomes of the items one model version pre-labelled."""

    model: ModelKey
    approved: int = 0
    corrected: int = 0
    discarded: int = 0

    @property
    def reviewed(self) -> int:
        """Items reviewed (any outcome)."""
        return self.approved + self.corrected + self.discarded

    @property
    def rate(self) -> float | None:
        """Approved without change / reviewed; ``None`` before any review."""
        return self.approved / self.reviewed if self.reviewed else None


def acceptance_by_model(rows: Iterable[tuple[ModelKey, str, int]]) -> list[Acceptance]:
    """Fold ``(model, status, count)`` rows into one :class:`Acceptance` per model version.

    Pending items are ignored; the result is sorted by model name and version.
    """
    by_model: dict[ModelKey, Acceptance] = {}
    for model, status, count in rows:
        if status not in ("approved", "corrected", "discarded"):
            continue
        acc = by_model.setdefault(model, Acceptance(model))
        setattr(acc, status, getattr(acc, status) + count)
    return sorted(
        by_model.values(),
        key=lambda a: (a.model.name or "", a.model.model_id or "", a.model.version or ""),
    )


def progress(counts: dict[str, int]) -> dict[str, Any]:
    """Counts per status, total and the fraction reviewed."""
    per_status = {status: counts.get(status, 0) for status in STATUSES}
    total = sum(per_status.values())
    reviewed = total - per_status[PENDING]
    return {
        "total": total,
        "counts": per_status,
        "reviewed": reviewed,
        "done_fraction": reviewed / total if total else 0.0,
    }


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ImageInfo:
    """What COCO needs of an item (from the dataset service's item events)."""

    item_id: str
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class ExportAnnotation:
    """An annotation as it is now (after human edits)."""

    id: str
    item_id: str
    type: str
    label: str
    coordinates: Any
    confidence: float | None
    source: str


@dataclass
class CocoExport:
    """A COCO document and what could not be expressed in it."""

    document: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)


def to_coco(
    images: Sequence[ImageInfo],
    annotations: Iterable[ExportAnnotation],
    *,
    description: str = "prelabel export",
    created: datetime | None = None,
) -> CocoExport:
    """Build a COCO detection document: boxes become ``bbox``, polygons ``segmentation``.

    Categories are the labels in name order (ids from 1); image ids follow ``images``
    (ids from 1) and keep the prelabel item id in ``prelabel_item_id``. Annotation types
    COCO has no place for (points, classifications, text, masks) are counted in
    ``skipped`` and left out.
    """
    image_ids = {image.item_id: n for n, image in enumerate(images, start=1)}
    kept: list[tuple[ExportAnnotation, list[float], list[list[float]], float]] = []
    skipped: dict[str, int] = {}
    for ann in annotations:
        if ann.item_id not in image_ids:
            skipped["no_image"] = skipped.get("no_image", 0) + 1
            continue
        if ann.type == "box":
            (x1, y1), (x2, y2) = ann.coordinates
            bbox = [x1, y1, x2 - x1, y2 - y1]
            segmentation = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            kept.append((ann, bbox, segmentation, bbox[2] * bbox[3]))
        elif ann.type == "polygon":
            flat = [float(c) for point in ann.coordinates for c in point]
            kept.append((ann, bounding_box(ann.coordinates), [flat], polygon_area(ann.coordinates)))
        else:
            skipped[ann.type] = skipped.get(ann.type, 0) + 1
    labels = sorted({ann.label for ann, *_ in kept})
    category_ids = {label: n for n, label in enumerate(labels, start=1)}
    coco_annotations = []
    for n, (ann, bbox, segmentation, area) in enumerate(kept, start=1):
        entry: dict[str, Any] = {
            "id": n,
            "image_id": image_ids[ann.item_id],
            "category_id": category_ids[ann.label],
            "bbox": bbox,
            "area": area,
            "iscrowd": 0,
            "segmentation": segmentation,
            "prelabel_annotation_id": ann.id,
            "prelabel_source": ann.source,
        }
        if ann.confidence is not None:
            entry["score"] = ann.confidence
        coco_annotations.append(entry)
    info: dict[str, Any] = {"description": description, "version": "1.0"}
    if created is not None:
        info["date_created"] = created.isoformat()
        info["year"] = created.year
    document = {
        "info": info,
        "licenses": [],
        "images": [
            {
                "id": image_ids[image.item_id],
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                "prelabel_item_id": image.item_id,
            }
            for image in images
        ],
        "annotations": coco_annotations,
        "categories": [
            {"id": category_ids[label], "name": label, "supercategory": ""} for label in labels
        ],
    }
    return CocoExport(document, skipped)
