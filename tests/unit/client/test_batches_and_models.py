"""A batch's skipped count in the CLI's progress and table; the billing models answer."""

from __future__ import annotations

import json
from decimal import Decimal

from rich.console import Console

from prelabel_client.cli.output import Format, dump, table
from prelabel_client.cli.review import MODEL_USAGE_COLUMNS
from prelabel_client.cli.runs import _batch_table, counts_text
from prelabel_client.models import Batch, ModelUsageReport

BATCH = {
    "id": "bat_1",
    "project_id": "prj_1",
    "service_id": "svc_1",
    "selection": {"item_ids": ["itm_1", "itm_2", "itm_3"]},
    "item_count": 3,
    "created_at": "2025-01-02T03:04:05Z",
    "counts": {"queued": 1, "success": 0, "skipped": 2},
    "finished": 2,
    "progress": 0.667,
}

REPORT = {
    "project_id": "prj_1",
    "from": None,
    "to": "2025-01-03T00:00:00Z",
    "models": [
        {
            "service_id": "svc_1",
            "model": {"name": "digits-classifier", "model_id": "mdl_1", "version": "1"},
            "runtime_seconds": "120.5",
            "cost": "0.40",
            "predictions": 10,
            "reviewed": 8,
            "accepted_unchanged": 4,
            "auto_accepted": 2,
            "acceptance_rate": 0.6667,
            "auto_accepted_share": 0.25,
            "cost_per_accepted_label": "0.10",
        },
        {
            "service_id": "svc_2",
            "model": None,
            "runtime_seconds": "3",
            "cost": "0.01",
            "predictions": 0,
            "reviewed": 0,
            "accepted_unchanged": 0,
            "auto_accepted": 0,
            "acceptance_rate": None,
            "auto_accepted_share": None,
            "cost_per_accepted_label": None,
        },
    ],
}


def _text(renderable: object) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_skipped_items_show_in_the_progress_counts_and_the_table() -> None:
    batch = Batch.model_validate(BATCH)

    assert batch.skipped == 2
    assert batch.force is False
    assert "skipped 2" in counts_text(batch.counts)
    assert "queued 1" in counts_text(batch.counts)
    rendered = _text(_batch_table(batch))
    assert "skipped" in rendered
    assert "forced" in rendered


def test_a_batch_without_skipped_items_reads_zero() -> None:
    batch = Batch.model_validate({**BATCH, "counts": {"queued": 3}, "force": True})

    assert batch.skipped == 0
    assert "skipped" not in counts_text(batch.counts)


def test_the_models_report_reads_and_prints_cost_per_accepted_label() -> None:
    report = ModelUsageReport.model_validate(REPORT)

    assert report.start is None
    assert report.models[0].cost_per_accepted_label == Decimal("0.10")
    assert report.models[1].model is None
    rendered = _text(table("models", MODEL_USAGE_COLUMNS, report.models))
    assert "digits-classifier 1" in rendered
    assert "67%" in rendered
    assert "25%" in rendered
    assert "0.10" in rendered
    assert "(none)" in rendered
    dumped = json.loads(dump(report, Format.json))
    assert dumped["models"][0]["cost_per_accepted_label"] == "0.10"
