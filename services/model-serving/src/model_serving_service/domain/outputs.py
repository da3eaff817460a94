"""Output adapters: Triton output tensors to annotations, per adapter type."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from common.contracts import PredictedAnnotation
from model_serving_service.domain.specs import AdapterSpec, ModelSpec


@dataclass(frozen=True)
class Geometry:
    """Size of the original image and of the tensor the model saw (for coordinates)."""

    width: int
    height: int
    input_width: int
    input_height: int


# --------------------------------------------------------------------------- adapters


class AdapterError(Exception):
    """The model's outputs do not have the shape its adapter expects."""


def _softmax(x: NDArray[Any]) -> NDArray[Any]:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: NDArray[Any] = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def _confidence(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _decode_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _scale_points(points: NDArray[Any], spec: AdapterSpec, geo: Geometry) -> list[list[float]]:
    """Points [P, 2] in model coordinates -> original image pixels, rounded."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if spec.coordinates == "normalized":
        sx, sy = float(geo.width), float(geo.height)
    else:
        sx = geo.width / geo.input_width if geo.input_width else 1.0
        sy = geo.height / geo.input_height if geo.input_height else 1.0
    out = []
    for x, y in pts:
        out.append(
            [
                round(min(max(x * sx, 0.0), float(geo.width)), 2),
                round(min(max(y * sy, 0.0), float(geo.height)), 2),
            ]
        )
    return out


def _box_points(box: NDArray[Any], spec: AdapterSpec) -> NDArray[Any]:
    x1, y1, a, b = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    x2, y2 = (x1 + a, y1 + b) if spec.box_format == "xywh" else (a, b)
    return np.array([[min(x1, x2), min(y1, y2)], [max(x1, x2), max(y1, y2)]])


def _item_rows(outputs: Mapping[str, NDArray[Any]], role: str, batch: int) -> NDArray[Any]:
    try:
        array = outputs[role]
    except KeyError as exc:
        raise AdapterError(f"output for role {role!r} is missing") from exc
    if array.ndim == 0 or array.shape[0] != batch:
        raise AdapterError(
            f"output {role!r} has shape {list(array.shape)}; expected batch dimension {batch}"
        )
    return array


def _label_at(spec: ModelSpec, classes: NDArray[Any] | None, i: int, k: int) -> str:
    if classes is None:
        return spec.labels[0]
    index = int(np.asarray(classes[i]).reshape(-1)[k])
    if not 0 <= index < len(spec.labels):
        raise AdapterError(f"class index {index} is outside the {len(spec.labels)} labels")
    return spec.labels[index]


def adapt(
    spec: ModelSpec, outputs: Mapping[str, NDArray[Any]], geometries: Sequence[Geometry]
) -> list[list[PredictedAnnotation]]:
    """Turn one batch of outputs (by role) into annotations per item.

    The label map and the confidence threshold are applied here; padding rows (negative
    or NaN scores) are skipped. Raises :class:`AdapterError` on unexpected shapes.
    """
    batch = len(geometries)
    scores = _item_rows(outputs, "scores", batch).astype(np.float64)
    if spec.adapter.type == "classification":
        return _classifications(spec, scores, batch)
    return _shapes(spec, outputs, scores, geometries)


def _classifications(
    spec: ModelSpec, scores: NDArray[Any], batch: int
) -> list[list[PredictedAnnotation]]:
    """The ``top_k`` labels per item above the threshold, best first."""
    adapter = spec.adapter
    result: list[list[PredictedAnnotation]] = []
    if scores.ndim != 2 or scores.shape[1] != len(spec.labels):
        raise AdapterError(
            f"classification scores have shape {list(scores.shape)}; expected "
            f"[{batch}, {len(spec.labels)}] (one score per label)"
        )
    if adapter.softmax:
        scores = _softmax(scores)
    for i in range(batch):
        row = scores[i]
        found: list[PredictedAnnotation] = []
        for index in np.argsort(-row, kind="stable")[: adapter.top_k]:
            confidence = float(row[index])
            label = spec.output_label(spec.labels[int(index)])
            if label is None or math.isnan(confidence):
                continue
            if confidence < spec.confidence_threshold:
                continue
            found.append(
                PredictedAnnotation(
                    type="classification", label=label, confidence=_confidence(confidence)
                )
            )
        result.append(found)
    return result


def _shapes(
    spec: ModelSpec,
    outputs: Mapping[str, NDArray[Any]],
    scores: NDArray[Any],
    geometries: Sequence[Geometry],
) -> list[list[PredictedAnnotation]]:
    """Boxes, polygons or text lines per item (padding rows skipped)."""
    batch = len(geometries)
    adapter = spec.adapter
    result: list[list[PredictedAnnotation]] = []
    if scores.ndim != 2:
        raise AdapterError(f"scores have shape {list(scores.shape)}; expected [N, K]")
    classes = _item_rows(outputs, "classes", batch) if "classes" in adapter.outputs else None
    if adapter.type == "boxes":
        geometry = _item_rows(outputs, "boxes", batch)
        if geometry.ndim != 3 or geometry.shape[2] != 4 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"boxes have shape {list(geometry.shape)}; expected [N, K, 4]")
    elif "polygons" in adapter.outputs:
        geometry = _item_rows(outputs, "polygons", batch)
        if geometry.ndim != 4 or geometry.shape[3] != 2 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"polygons have shape {list(geometry.shape)}; expected [N, K, P, 2]")
    else:
        geometry = _item_rows(outputs, "boxes", batch)
        if geometry.ndim != 3 or geometry.shape[2] != 4 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"boxes have shape {list(geometry.shape)}; expected [N, K, 4]")
    texts = _item_rows(outputs, "texts", batch) if adapter.type == "text" else None
    if texts is not None and (texts.ndim != 2 or texts.shape[1] != scores.shape[1]):
        raise AdapterError(f"texts have shape {list(texts.shape)}; expected [N, K]")

    for i, geo in enumerate(geometries):
        found: list[PredictedAnnotation] = []
        for k in range(scores.shape[1]):
            confidence = float(scores[i, k])
            if math.isnan(confidence) or confidence < 0:
                continue  # padding
            if confidence < spec.confidence_threshold:
                continue
            label = spec.output_label(_label_at(spec, classes, i, k))
            if label is None:
                continue
            shape = geometry[i, k]
            if geometry.ndim == 3:  # boxes
                box = _box_points(shape, adapter)
                points = _scale_points(box, adapter, geo)
                if adapter.type == "text":
                    (x1, y1), (x2, y2) = points
                    points = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
            else:
                points = _scale_points(shape, adapter, geo)
            annotation_type: Literal["box", "polygon", "text"] = (
                "box"
                if adapter.type == "boxes"
                else "polygon"
                if adapter.type == "polygons"
                else "text"
            )
            found.append(
                PredictedAnnotation(
                    type=annotation_type,
                    label=label,
                    coordinates=points,
                    confidence=_confidence(confidence),
                    text=_decode_text(texts[i, k]) if texts is not None else None,
                )
            )
        result.append(found)
    return result
