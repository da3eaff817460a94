"""The hot path's hand-serialised events are the contract's events."""

from __future__ import annotations

from datetime import UTC, datetime

from annotation_service import domain
from annotation_service.repository import SOURCE, created_events
from common.contracts import AnnotationCreated, ModelRef, PredictedAnnotation, PredictionCompleted
from common.envelope import CloudEvent, make_event
from common.messaging import parse_event


def test_serialised_created_events_equal_the_contract_events() -> None:
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

    fast = created_events(rows, "corr", now)

    for event, row in zip(fast, rows, strict=True):
        expected = make_event(
            AnnotationCreated(
                annotation_id=row.id,
                project_id=row.project_id,
                dataset_id=row.dataset_id,
                item_id=row.item_id,
                type=row.type,  # type: ignore[arg-type]
                label=row.label,
                source=row.source,
                execution_id=row.execution_id,
            ),
            source=SOURCE,
            subject=row.id,
            correlationid="corr",
            event_id=domain.created_event_id(row.id),
            time=now,
        )
        parsed: CloudEvent[AnnotationCreated] = parse_event(
            event.to_json_bytes(), AnnotationCreated
        )
        assert parsed == expected
        assert (event.id, event.routing_key) == (expected.id, expected.routing_key)
