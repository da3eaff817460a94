"""The prediction batch handler: one transaction per batch; a bad message fails alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from annotation_service.usecases.ingest import DUPLICATE, IngestResult, Prediction, PredictionIngest
from common.consumer import HANDLED, DeadLetter, Retry
from common.contracts import ModelRef, PredictedAnnotation, PredictionCompleted
from common.envelope import make_event


def body(item: str, coordinates: object = ((0, 0), (2, 2)), boxes: int = 2) -> bytes:
    now = datetime.now(UTC)
    prediction = PredictionCompleted.model_construct(
        execution_id=f"exe_{item}",
        service_id="svc",
        project_id="prj",
        dataset_id="ds",
        item_id=item,
        replica_id="rep",
        model=ModelRef(name="m", model_id="mdl", version="1"),
        annotations=[
            PredictedAnnotation.model_construct(
                type="box", label="cat", coordinates=coordinates, confidence=0.9, text=None
            )
            for _ in range(boxes)
        ],
        started_at=now,
        finished_at=now,
    )
    return make_event(prediction, source="/test").to_json_bytes()


class Store:
    """Records each call; fails any batch that holds one of ``failing`` items."""

    def __init__(self, failing: Sequence[str] = (), stored: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.failing = set(failing)
        self.stored = stored

    async def __call__(self, batch: Sequence[Prediction]) -> list[IngestResult]:
        items = [event.data.item_id for event, _ in batch]
        self.calls.append(items)
        if self.failing & set(items):
            raise RuntimeError("deadlock detected")
        return [
            IngestResult(stored=len(rows) if self.stored is None else self.stored, added_to_tasks=0)
            for _, rows in batch
        ]


async def test_good_predictions_are_stored_in_one_call_with_their_rows() -> None:
    store = Store()

    outcomes = await PredictionIngest(store)([body("a"), body("b", boxes=3), body("c")])

    assert outcomes == [HANDLED, HANDLED, HANDLED]
    assert store.calls == [["a", "b", "c"]]


async def test_bad_json_and_bad_geometry_are_dead_lettered_with_reasons_and_the_rest_stored() -> (
    None
):
    store = Store()

    outcomes = await PredictionIngest(store)(
        [body("a"), b"{not json", body("b", coordinates=[[0, 0]]), body("c")]
    )

    assert outcomes[0] == HANDLED
    assert outcomes[3] == HANDLED
    assert isinstance(outcomes[1], DeadLetter)
    assert "not JSON" in outcomes[1].reason
    assert isinstance(outcomes[2], DeadLetter)
    assert "annotation 0" in outcomes[2].reason
    assert store.calls == [["a", "c"]]


async def test_a_failing_batch_is_retried_one_by_one_so_only_the_bad_one_is_retried() -> None:
    store = Store(failing=["b"])

    outcomes = await PredictionIngest(store)([body("a"), body("b"), body("c")])

    assert outcomes[0] == HANDLED
    assert outcomes[2] == HANDLED
    assert isinstance(outcomes[1], Retry)
    assert "deadlock" in outcomes[1].reason
    assert store.calls == [["a", "b", "c"], ["a"], ["b"], ["c"]]


async def test_a_redelivered_prediction_storing_nothing_counts_as_a_duplicate() -> None:
    outcomes = await PredictionIngest(Store(stored=0))([body("a")])

    assert outcomes == [DUPLICATE]
