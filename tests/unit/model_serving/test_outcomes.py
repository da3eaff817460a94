"""The outcome events a worker builds from a predict request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.contracts import ItemSnapshot, ModelRef, Origin, PredictionCompleted, PredictRequest
from model_serving_service.domain.outcomes import completed_event

NOW = datetime(2026, 12, 3, tzinfo=UTC)
ITEM = ItemSnapshot(
    id="itm_1",
    project_id="prj_1",
    dataset_id="ds_1",
    name="a.png",
    filename="/a.png",
    dir="/",
    metadata={},
    created_at=NOW,
    updated_at=NOW,
)
MODEL = ModelRef(name="digits", model_id="mdl_1", version="1")


@pytest.mark.parametrize(
    "origin",
    [
        None,
        Origin(way="trigger", id="trg_1"),
        Origin(way="pipeline", id="ppl_1", pipeline_execution_id="pex_1", node_id="predict"),
    ],
)
def test_a_completed_prediction_echoes_the_origin_of_its_request(origin: Origin | None) -> None:
    request = PredictRequest(
        execution_id="exe_1", service_id="svc_1", project_id="prj_1", item=ITEM, origin=origin
    )
    event = completed_event(
        request,
        "exe_1:1",
        service_id="svc_1",
        replica_id="rep_1",
        model=MODEL,
        annotations=[],
        started_at=NOW,
    )
    data = PredictionCompleted.model_validate(event.data)
    assert data.origin == origin
    assert data.execution_id == "exe_1"
