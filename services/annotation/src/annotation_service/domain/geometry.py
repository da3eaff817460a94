"""Geometry checks and measures of annotation coordinates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from annotation_service.domain.errors import AnnotationError
from common.contracts.model_serving import AnnotationType

ANNOTATION_TYPES: tuple[AnnotationType, ...] = (
    "box",
    "polygon",
    "point",
    "classification",
    "segmentation",
    "text",
)


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
