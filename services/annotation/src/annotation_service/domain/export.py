"""COCO and JSON-lines export shapes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from annotation_service.domain.geometry import bounding_box, polygon_area


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
