"""The hot path's hand-serialised events are the contract's events."""

from __future__ import annotations

from datetime import UTC, datetime

from annotation_service import domain
from annotation_service.domain import SOURCE, created_event
from common.contracts import (
    AnnotationsCreated,
    CreatedAnnotation,
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
)
from common.envelope import CloudEvent, make_event
from common.messaging import parse_event


def test_serialised_created_event_equals_the_contract_event() -> None:
    now = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    prediction = PredictionCompleted(
        execution_id='exe_\u00e9"1',
        service_id="svc",
        project_id="prj",
        dataset_id="ds",
        item_id="it/\u2603",
        replica_id="rep",
        model=ModelRef(name="m", model_id="mdl", version="1"),
        annotations=[
            PredictedAnnotation(
                type="box", label='ca"t\n', coordinates=[[0, 0], [1, 1]], confidence=1
            ),
            PredictedAnnotation(type="text", label="t", text="hello", confidence=0.2),
        ],
        started_at=now,
        finished_at=now,
    )
    rows = domain.annotations_from_prediction(prediction)

    fast = created_event(rows, "corr", now)

    expected = make_event(
        AnnotationsCreated(
            project_id="prj",
            dataset_id="ds",
            item_id="it/\u2603",
            source="model",
            execution_id='exe_\u00e9"1',
            annotations=[
                CreatedAnnotation(annotation_id=row.id, type=row.type, label=row.label)  # type: ignore[arg-type]
                for row in rows
            ],
        ),
        source=SOURCE,
        subject="it/\u2603",
        correlationid="corr",
        event_id=domain.created_event_id('exe_\u00e9"1'),
        time=now,
    )
    parsed: CloudEvent[AnnotationsCreated] = parse_event(fast.to_json_bytes(), AnnotationsCreated)
    assert parsed == expected
    assert [a.label for a in parsed.data.annotations] == ['ca"t\n', "t"]
    assert (fast.id, fast.routing_key) == (expected.id, expected.routing_key)
