"""The pure rules behind add_task_item.v1 and the auto-accepted share."""

from __future__ import annotations

import pytest

from annotation_service import domain
from annotation_service.domain import AnnotationError, ModelKey
from common.contracts import AddTaskItem, ModelRef, PredictedAnnotation, PredictionCompleted


def command(**changes: object) -> AddTaskItem:
    fields: dict[str, object] = {
        "project_id": "prj",
        "task_id": "task_1",
        "dataset_id": "ds",
        "item_id": "it",
        "pipeline_id": "pipe",
        "pipeline_execution_id": "pex",
        "node_id": "task",
        "execution_id": "exe",
        "service_id": "svc",
        "model": ModelRef(name="m", model_id="mdl", version="1"),
        "annotations": [
            PredictedAnnotation(type="box", label="cat", coordinates=[[3, 3], [1, 1]], confidence=1)
        ],
    }
    return AddTaskItem.model_validate({**fields, **changes})


def test_a_command_stores_the_same_rows_as_its_prediction() -> None:
    cmd = command()
    from_prediction = domain.annotations_from_prediction(
        PredictionCompleted.model_construct(
            execution_id="exe",
            service_id="svc",
            project_id="prj",
            dataset_id="ds",
            item_id="it",
            model=cmd.model,
            annotations=cmd.annotations,
            origin=None,
        )
    )

    rows = domain.annotations_from_command(cmd)

    assert [(r.id, r.coordinates) for r in rows] == [(r.id, r.coordinates) for r in from_prediction]
    assert rows[0].coordinates == [[1.0, 1.0], [3.0, 3.0]]
    assert rows[0].origin is not None
    assert (rows[0].origin.way, rows[0].origin.id, rows[0].origin.node_id) == (
        "pipeline",
        "pipe",
        None,
    )


def test_annotations_without_their_execution_are_refused() -> None:
    with pytest.raises(AnnotationError, match="without execution_id"):
        domain.annotations_from_command(command(execution_id=None))
    assert domain.annotations_from_command(command(execution_id=None, annotations=[])) == []


@pytest.mark.parametrize(
    ("task", "item", "message"),
    [
        ((None, None), None, "task 'task_1' not found in project 'prj'"),
        (("other", "ds"), None, "task 'task_1' not found in project 'prj'"),
        (("prj", "ds2"), None, "task 'task_1' is on dataset 'ds2', not 'ds'"),
        (("prj", "ds"), ("prj", "ds9"), "item 'it' is not in dataset 'ds' of project 'prj'"),
    ],
)
def test_a_command_outside_its_task_project_or_dataset_is_refused(
    task: tuple[str | None, str | None], item: tuple[str, str] | None, message: str
) -> None:
    with pytest.raises(AnnotationError) as refused:
        domain.check_command(command(), task[0], task[1], item)
    assert refused.value.message == message


def test_nul_characters_in_ids_are_refused() -> None:
    with pytest.raises(AnnotationError, match="node_id contains a NUL"):
        domain.check_command(command(node_id="t\x00"), "prj", "ds", None)
    domain.check_command(command(), "prj", "ds", ("prj", "ds"))


def test_auto_accepted_share_is_of_the_reviewed_items() -> None:
    v1 = ModelKey("m", "mdl", "1")
    rows = [(v1, "approved", 3), (v1, "corrected", 1)]

    [acc] = domain.acceptance_by_model(rows, [(v1, 2)])

    assert (acc.reviewed, acc.rate, acc.auto_accepted, acc.auto_accepted_share) == (4, 0.75, 2, 0.5)
    assert domain.Acceptance(v1).auto_accepted_share is None
