"""Annotation rules without servers: geometry, ids, task rules, review, acceptance, COCO."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from annotation_service import domain
from annotation_service.domain import AnnotationError, ModelKey, TaskRule
from common.contracts import ModelRef, PredictedAnnotation, PredictionCompleted


def _prediction(
    annotations: list[PredictedAnnotation], service_id: str = "svc_a", dataset_id: str = "ds"
) -> PredictionCompleted:
    now = datetime.now(UTC)
    return PredictionCompleted(
        execution_id="exe_1",
        service_id=service_id,
        project_id="prj",
        dataset_id=dataset_id,
        item_id="it",
        replica_id="rep",
        model=ModelRef(name="m", model_id="mdl", version="3"),
        annotations=annotations,
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize(
    ("kind", "coordinates", "expected"),
    [
        ("box", [[5, 6], [1, 2]], [[1.0, 2.0], [5.0, 6.0]]),
        ("polygon", [[0, 0], [1, 0], [0, 1]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        ("point", [3, 4], [3.0, 4.0]),
        ("classification", None, None),
        ("text", None, None),
        ("text", [[5, 6], [1, 2]], [[1.0, 2.0], [5.0, 6.0]]),
        # An OCR line: the quadrilateral the detector found, kept point by point.
        (
            "text",
            [[10, 20], [90, 22], [89, 40], [9, 38]],
            [[10.0, 20.0], [90.0, 22.0], [89.0, 40.0], [9.0, 38.0]],
        ),
        ("segmentation", {"rle": "abc"}, {"rle": "abc"}),
    ],
)
def test_valid_geometry_is_normalized(kind: str, coordinates: object, expected: object) -> None:
    assert domain.normalize_geometry(kind, coordinates) == expected


@pytest.mark.parametrize(
    ("kind", "coordinates"),
    [
        ("box", [1, 2, 3, 4]),
        ("box", [[1, 2], [3, "x"]]),
        ("box", [[1, 2], [3, float("nan")]]),
        ("polygon", [[0, 0], [1, 1]]),
        ("point", [1]),
        ("classification", [1, 2]),
        ("ellipse", None),
        ("box", [[True, 2], [3, 4]]),
        ("text", [[1, 2]]),
        ("text", "a line"),
        ("text", [[0, 0], [1, 0], [1, "x"]]),
        ("text", [[0, 0], [1, 0], [1, float("inf")]]),
    ],
)
def test_invalid_geometry_is_refused_with_a_reason(kind: str, coordinates: object) -> None:
    with pytest.raises(AnnotationError) as error:
        domain.normalize_geometry(kind, coordinates)
    assert error.value.status == 422
    assert error.value.message


def test_prediction_rows_have_stable_ids_per_execution_and_index() -> None:
    event = _prediction(
        [
            PredictedAnnotation(type="box", label="a", coordinates=[[0, 0], [1, 1]], confidence=1),
            PredictedAnnotation(type="classification", label="b", confidence=0.5),
        ]
    )

    first = domain.annotations_from_prediction(event)
    again = domain.annotations_from_prediction(event)

    assert [r.id for r in first] == [r.id for r in again]
    assert len({r.id for r in first}) == 2
    assert [r.index for r in first] == [0, 1]
    assert first[0].original() == {
        "type": "box",
        "label": "a",
        "coordinates": [[0.0, 0.0], [1.0, 1.0]],
        "confidence": 1.0,
        "text": None,
    }
    assert first[0].model_version == "3"


def test_a_bad_predicted_shape_names_its_index() -> None:
    event = _prediction(
        [
            PredictedAnnotation(type="point", label="a", coordinates=[1, 1], confidence=1),
            PredictedAnnotation(type="polygon", label="b", coordinates=[[1, 1]], confidence=1),
        ]
    )
    with pytest.raises(AnnotationError, match="annotation 1: polygon"):
        domain.annotations_from_prediction(event)


def test_task_rules_match_dataset_and_services() -> None:
    everything = TaskRule("t1", "prj", "ds", auto_add=True)
    only_a = TaskRule("t2", "prj", "ds", auto_add_from_services=("svc_a",))
    manual = TaskRule("t3", "prj", "ds")

    assert everything.accepts(_prediction([], service_id="svc_z"))
    assert not everything.accepts(_prediction([], dataset_id="other"))
    assert only_a.accepts(_prediction([], service_id="svc_a"))
    assert not only_a.accepts(_prediction([], service_id="svc_b"))
    assert not manual.accepts(_prediction([]))


@pytest.mark.parametrize(
    ("action", "corrections", "changed", "expected"),
    [
        ("approve", 0, False, "approved"),
        ("approve", 0, True, "corrected"),
        ("correct", 2, False, "corrected"),
        ("correct", 0, True, "corrected"),
        ("discard", 0, True, "discarded"),
    ],
)
def test_review_outcome(action: str, corrections: int, changed: bool, expected: str) -> None:
    assert domain.review_outcome(action, corrections, changed) == expected  # type: ignore[arg-type]


def test_correct_without_any_change_is_refused() -> None:
    with pytest.raises(AnnotationError):
        domain.review_outcome("correct", 0, False)


def test_acceptance_is_approved_without_change_over_reviewed_per_version() -> None:
    v1, v2 = ModelKey("m", "mdl", "1"), ModelKey("m", "mdl", "2")
    rows = [
        (v1, "approved", 3),
        (v1, "corrected", 1),
        (v1, "discarded", 1),
        (v1, "pending-review", 10),
        (v2, "corrected", 2),
    ]

    result = {a.model.version: a for a in domain.acceptance_by_model(rows)}

    assert (result["1"].reviewed, result["1"].rate) == (5, 0.6)
    assert (result["2"].reviewed, result["2"].rate) == (2, 0.0)
    assert domain.Acceptance(v1).rate is None


def test_progress_counts_every_status() -> None:
    assert domain.progress({"approved": 1, "pending-review": 3}) == {
        "total": 4,
        "counts": {"pending-review": 3, "approved": 1, "corrected": 0, "discarded": 0},
        "reviewed": 1,
        "done_fraction": 0.25,
    }


def test_coco_document_has_boxes_polygons_and_categories() -> None:
    images = [domain.ImageInfo("it_1", "/a.png", 100, 50), domain.ImageInfo("it_2", "/b", 0, 0)]
    anns = [
        domain.ExportAnnotation("a1", "it_1", "box", "cat", [[10, 5], [30, 25]], 0.9, "model"),
        domain.ExportAnnotation(
            "a2", "it_2", "polygon", "ant", [[0, 0], [4, 0], [4, 3]], None, "human"
        ),
        domain.ExportAnnotation("a3", "it_1", "point", "cat", [1, 1], 0.5, "model"),
        domain.ExportAnnotation("a4", "gone", "box", "cat", [[0, 0], [1, 1]], 0.5, "model"),
    ]

    export = domain.to_coco(images, anns)
    doc = export.document

    assert doc["categories"] == [
        {"id": 1, "name": "ant", "supercategory": ""},
        {"id": 2, "name": "cat", "supercategory": ""},
    ]
    box, polygon = doc["annotations"]
    assert (box["bbox"], box["area"], box["category_id"], box["image_id"]) == (
        [10, 5, 20, 20],
        400,
        2,
        1,
    )
    assert box["score"] == 0.9
    assert polygon["segmentation"] == [[0.0, 0.0, 4.0, 0.0, 4.0, 3.0]]
    assert (polygon["bbox"], polygon["area"]) == ([0, 0, 4, 3], 6.0)
    assert "score" not in polygon
    assert export.skipped == {"point": 1, "no_image": 1}
    assert [i["id"] for i in doc["images"]] == [1, 2]
