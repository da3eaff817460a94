"""Every catalog model pre-labels through the whole stack, the way a user meets it.

For each catalog model (digits, faces, OCR): a file uploaded into a dataset runs through a
pipeline (Dataset with an "Item Created" trigger -> Predict on a model service scaled from
zero -> Labeling Task); its prediction is stored as annotations on the item and the item
enters the task with them.
What is stored must be what ``predict-now`` answers for the same file: a model whose
output the annotation service refused would leave the item without pre-labels while
its execution says ``success`` (OCR lines were lost that way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from prelabel_client import Prelabel
from prelabel_client.models import (
    Annotation,
    Execution,
    PredictedAnnotation,
    Scaling,
    TaskItem,
)
from tests.e2e.conftest import RunningStack, until
from tests.integration.model_serving.conftest import astronaut_png, held_out_digits, text_image

DEADLINE_S = 120.0


@dataclass(frozen=True)
class Case:
    model: str
    file_name: str
    data: Callable[[], bytes]
    types: set[str]
    """Annotation types the model must produce for this file."""


CASES = [
    Case("digits-classifier", "digit.png", lambda: held_out_digits(1)[0][1], {"classification"}),
    Case("face-detector", "astronaut.png", astronaut_png, {"box"}),
    Case(
        "ocr-text",
        "invoice.png",
        lambda: text_image(["INVOICE 2024-117", "Total due: 42.50 EUR"]),
        {"text"},
    ),
]


def _comparable(annotation: Annotation | PredictedAnnotation) -> tuple[Any, ...]:
    return (annotation.type, annotation.label, annotation.text)


def _client(stack: RunningStack, api_key: str = "admin-only") -> Prelabel:
    e = stack.client_endpoints
    return Prelabel(e, api_key, admin_key=stack.endpoints.admin_key, timeout_s=60)


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
async def test_catalog_model_prelabels_an_uploaded_file_into_the_item_and_the_task(
    stack: RunningStack, case: Case
) -> None:
    async with _client(stack) as admin:
        project = await admin.projects.create(f"e2e-{case.model}")
        key = await admin.projects.create_api_key(project.id, "e2e")
    async with _client(stack, str(key.key)) as client:
        dataset = await client.datasets.create("files")
        model = await client.models.install(case.model)
        service = await client.services.deploy(
            model.id,
            case.model,
            Scaling(min_replicas=0, max_replicas=1, cooldown_seconds=2, drain_seconds=2),
        )
        await client.services.wait_ready(service.id, timeout_s=DEADLINE_S)
        task = await client.tasks.create("review", dataset.id)
        pipeline = await client.pipelines.create(
            {
                "name": f"{case.model}-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {
                        "dataset_id": dataset.id,
                        "trigger": {"actions": ["Created"], "execution_mode": "Once"}}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service.id}},
                    {"id": "review", "type": "task", "config": {"task_id": task.id}},
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
            }
        )  # fmt: skip
        await client.pipelines.start(pipeline.id)

        data = case.data()
        item = await client.items.upload(dataset.id, data, case.file_name, remote_dir="/e2e")

        async def finished_execution() -> Execution | None:
            page = await client.executions.list(service_id=service.id, item_id=item.id)
            done = [e for e in page.items if e.status in ("success", "failed")]
            return done[0] if done else None

        execution = await until("the execution to finish", finished_execution)
        assert execution.status == "success", execution

        async def stored() -> list[Annotation]:
            return await client.annotations.list(item_id=item.id)

        annotations = await until("the annotations to be stored on the item", stored)

        async def in_task() -> list[TaskItem]:
            return (await client.tasks.items(task.id)).items

        (task_item,) = await until("the item to enter the task", in_task)
        now = await client.services.predict_now(service.id, data, case.file_name)

    expected = now.annotations
    assert expected, f"{case.model} found nothing in its sample: the comparison would be empty"
    assert {a.type for a in expected} == case.types
    assert sorted(map(_comparable, annotations)) == sorted(map(_comparable, expected))
    by_key = {_comparable(a): a for a in annotations}
    for want in expected:
        got = by_key[_comparable(want)]
        assert got.confidence == pytest.approx(want.confidence, abs=1e-6)
        if want.coordinates is None:
            assert got.coordinates is None
        else:
            assert np.allclose(got.coordinates, want.coordinates, atol=1e-3), got
        assert got.model is not None, got
        assert got.model.name == case.model, got
        assert got.execution_id == execution.id
    assert task_item.item_id == item.id
    assert sorted(map(_comparable, task_item.annotations)) == sorted(map(_comparable, expected))
