"""The document a pipeline edge condition is evaluated on: the item plus its prediction.

``prediction_document(item, annotations)`` builds it for ``matches``; the fields a
condition may name are ``PREDICTION_FIELDS`` (parse the condition with
``parse_filter(..., prediction=True)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class AnnotationLike(Protocol):
    """What a prediction's annotation must offer (``PredictedAnnotation`` does)."""

    @property
    def label(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def type(self) -> str: ...


def _row(annotation: AnnotationLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(annotation, Mapping):
        return {k: annotation.get(k) for k in ("label", "confidence", "type")}
    return {
        "label": annotation.label,
        "confidence": annotation.confidence,
        "type": annotation.type,
    }


def prediction_fields(annotations: Iterable[AnnotationLike | Mapping[str, Any]]) -> dict[str, Any]:
    """The ``prediction`` part of the document::

        {"annotations": [{"label": "cat", "confidence": 0.93, "type": "box"}, ...],
         "count": 2, "min_confidence": 0.71, "max_confidence": 0.93}

    ``min_confidence``/``max_confidence`` are absent when there are no annotations
    (so ``{"prediction.min_confidence": {"$gte": 0.9}}`` is false for an empty
    prediction, and ``$exists: false`` finds it).
    """
    rows = [_row(a) for a in annotations]
    doc: dict[str, Any] = {"annotations": rows, "count": len(rows)}
    confidences = [
        c
        for c in (row["confidence"] for row in rows)
        if isinstance(c, int | float) and not isinstance(c, bool)
    ]
    if confidences:
        doc["min_confidence"] = min(confidences)
        doc["max_confidence"] = max(confidences)
    return doc


def prediction_document(
    item: Mapping[str, Any], annotations: Iterable[AnnotationLike | Mapping[str, Any]]
) -> dict[str, Any]:
    """``item`` (the item's filter document, e.g. ``ItemSnapshot.as_filter_document()``,
    or just ``{"metadata": ...}``) with ``prediction`` set from ``annotations``."""
    return {**item, "prediction": prediction_fields(annotations)}
