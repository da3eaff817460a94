"""What model-serving's output adapters produce, the annotation service stores.

Both sides have their own tests; this one joins them: each adapter type (and each of
the catalog models' adapters) turns real-shaped Triton outputs into annotations, and
the annotation service's rules must keep every one of them with its geometry. A
prediction the annotation service refused would be dead-lettered while its execution
says ``success`` (the OCR pre-labels were lost that way).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from annotation_service import domain
from common.contracts import ModelRef, PredictedAnnotation, PredictionCompleted
from model_serving_service.catalog import CATALOG
from model_serving_service.domain.outputs import Geometry, adapt
from model_serving_service.domain.specs import ModelSpec, parse_spec

GEO = Geometry(width=200, height=100, input_width=200, input_height=100)


def _spec(adapter: dict[str, Any], labels: list[str]) -> ModelSpec:
    return parse_spec({"input": {"tensor": "IMAGE"}, "adapter": adapter, "labels": labels})


def _outputs(spec: ModelSpec) -> dict[str, np.ndarray]:
    """Triton-shaped outputs for one image with two detections, by the spec's roles."""
    kind = spec.adapter.type
    if kind == "classification":
        scores = np.full((1, len(spec.labels)), 0.01, dtype=np.float32)
        scores[0, 1] = 0.9
        return {"scores": scores}
    outputs: dict[str, np.ndarray] = {
        "scores": np.array([[0.9, 0.8]], dtype=np.float32),
    }
    if "classes" in spec.adapter.outputs:
        outputs["classes"] = np.array([[0, 0]], dtype=np.int32)
    if "polygons" in spec.adapter.outputs:
        outputs["polygons"] = np.array(
            [[[[10, 10], [60, 12], [58, 30], [9, 28]], [[5, 50], [90, 50], [90, 70], [5, 70]]]],
            dtype=np.float32,
        )
    else:
        outputs["boxes"] = np.array([[[10, 20, 50, 60], [5, 5, 9, 9]]], dtype=np.float32)
    if kind == "text":
        outputs["texts"] = np.array([[b"INVOICE 2024-117", b"Total 42.50"]], dtype=object)
    return outputs


def _roles(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs keyed by role, as the worker hands them to :func:`adapt`."""
    return {role: outputs[role] for role in spec.adapter.outputs}


SPECS = {
    "classification": _spec(
        {"type": "classification", "outputs": {"scores": "P"}}, ["cat", "dog", "bird"]
    ),
    "boxes": _spec(
        {"type": "boxes", "outputs": {"boxes": "B", "scores": "S", "classes": "C"}}, ["face"]
    ),
    "polygons": _spec({"type": "polygons", "outputs": {"polygons": "P", "scores": "S"}}, ["lake"]),
    "text-boxes": _spec(
        {"type": "text", "outputs": {"boxes": "B", "texts": "T", "scores": "S"}}, ["text"]
    ),
    "text-polygons": _spec(
        {"type": "text", "outputs": {"polygons": "P", "texts": "T", "scores": "S"}}, ["text"]
    ),
    **{f"catalog:{name}": entry.spec for name, entry in CATALOG.items()},
}


def _prediction(annotations: list[PredictedAnnotation]) -> PredictionCompleted:
    now = datetime.now(UTC)
    return PredictionCompleted(
        execution_id="exe_1",
        service_id="svc",
        project_id="prj",
        dataset_id="ds",
        item_id="itm",
        replica_id="rep",
        model=ModelRef(name="m", model_id="mdl", version="1"),
        annotations=annotations,
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_adapter_output_is_stored_with_its_geometry(name: str) -> None:
    spec = SPECS[name]
    (predicted,) = adapt(spec, _roles(spec, _outputs(spec)), [GEO])
    assert predicted, f"{name}: the adapter produced nothing to check"

    rows = domain.annotations_from_prediction(_prediction(predicted))

    assert [r.type for r in rows] == [a.type for a in predicted]
    assert [r.label for r in rows] == [a.label for a in predicted]
    assert [r.text for r in rows] == [a.text for a in predicted]
    for row, annotation in zip(rows, predicted, strict=True):
        if annotation.coordinates is None:
            assert row.coordinates is None
        else:
            # Normalised (floats, box corners ordered), never reshaped or dropped.
            assert np.allclose(row.coordinates, annotation.coordinates), name
