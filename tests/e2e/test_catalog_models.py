"""Every catalog model pre-labels through the whole stack, the way a user meets it.

For each catalog model (digits, faces, OCR): a file uploaded into a dataset reaches a
model service scaled from zero through an "Item Created" trigger; its prediction is
stored as annotations on the item and the item enters the labeling task with them.
What is stored must be what ``predict-now`` answers for the same file: a model whose
output the annotation service refused would leave the item without pre-labels while
its execution says ``success`` (OCR lines were lost that way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from scripts.demo import Api
from tests.e2e.conftest import RunningStack
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


async def _until(
    what: str, probe: Callable[[], Awaitable[Any]], deadline_s: float = DEADLINE_S
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"waited {deadline_s:.0f}s for {what}; last answer {last!r}")


def _comparable(annotation: dict[str, Any]) -> tuple[Any, ...]:
    return (annotation["type"], annotation["label"], annotation.get("text"))


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
async def test_catalog_model_prelabels_an_uploaded_file_into_the_item_and_the_task(
    stack: RunningStack, case: Case
) -> None:
    api = Api(stack.endpoints, timeout_s=60)
    step = case.model
    try:
        project = await api.call(
            "dataset", "POST", "/projects", step=step, expect=(201,), admin=True,
            json={"name": f"e2e-{case.model}"},
        )  # fmt: skip
        key = await api.call(
            "dataset", "POST", f"/projects/{project['id']}/api-keys", step=step,
            expect=(201,), admin=True, json={"name": "e2e"},
        )  # fmt: skip
        api.api_key = key["key"]
        dataset = await api.call(
            "dataset", "POST", "/datasets", step=step, expect=(201,), json={"name": "files"}
        )
        model = await api.call(
            "model-serving", "POST", f"/catalog/{case.model}/install", step=step, expect=(201,)
        )
        service = await api.call(
            "model-serving", "POST", "/services", step=step, expect=(201,),
            json={"model_id": model["id"], "name": case.model, "min_replicas": 0,
                  "max_replicas": 1, "cooldown_seconds": 2, "drain_seconds": 2},
        )  # fmt: skip
        service_id = service["id"]

        async def router_sees_it_ready() -> bool:
            known = await api.call(
                "trigger-router", "GET", f"/services/{service_id}", step=step, expect=(200, 404)
            )
            return bool(known) and known.get("status") == "ready"

        await _until("the router to see the service ready", router_sees_it_ready)
        await api.call(
            "trigger-router", "POST", "/triggers", step=step, expect=(201,),
            json={"name": f"{case.model}-created", "spec": {
                "resource": "Item", "actions": ["Created"], "execution_mode": "Once",
                "filter": {"dataset_id": dataset["id"]},
                "operation": {"type": "predict", "service_id": service_id}}},
        )  # fmt: skip
        task = await api.call(
            "annotation", "POST", "/tasks", step=step, expect=(201,),
            json={"name": "review", "dataset_id": dataset["id"],
                  "auto_add_from_services": [service_id]},
        )  # fmt: skip

        data = case.data()
        item = await api.call(
            "dataset", "POST", f"/datasets/{dataset['id']}/items", step=step, expect=(201,),
            files={"file": (case.file_name, data, "image/png")}, data={"dir": "/e2e"},
        )  # fmt: skip

        async def finished_execution() -> dict[str, Any] | None:
            page = await api.call(
                "trigger-router", "GET", "/executions", step=step,
                params={"service_id": service_id, "item_id": item["id"]},
            )  # fmt: skip
            done = [e for e in page["items"] if e["status"] in ("success", "failed")]
            return done[0] if done else None

        execution = await _until("the execution to finish", finished_execution)
        assert execution["status"] == "success", execution

        async def stored() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = await api.call(
                "annotation", "GET", "/annotations", step=step, params={"item_id": item["id"]}
            )
            return found

        annotations = await _until("the annotations to be stored on the item", stored)

        async def in_task() -> list[dict[str, Any]]:
            page = await api.call("annotation", "GET", f"/tasks/{task['id']}/items", step=step)
            items: list[dict[str, Any]] = page["items"]
            return items

        (task_item,) = await _until("the item to enter the task", in_task)

        now = await api.call(
            "model-serving", "POST", f"/services/{service_id}/predict-now", step=step,
            files={"file": (case.file_name, data, "image/png")},
        )  # fmt: skip
    finally:
        await api.aclose()

    expected = now["annotations"]
    assert expected, f"{case.model} found nothing in its sample: the comparison would be empty"
    assert {a["type"] for a in expected} == case.types
    assert sorted(map(_comparable, annotations)) == sorted(map(_comparable, expected))
    by_key = {_comparable(a): a for a in annotations}
    for want in expected:
        got = by_key[_comparable(want)]
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
        if want["coordinates"] is None:
            assert got["coordinates"] is None
        else:
            assert np.allclose(got["coordinates"], want["coordinates"], atol=1e-3), got
        assert got["model"]["name"] == case.model, got
        assert got["execution_id"] == execution["id"]
    assert task_item["item_id"] == item["id"]
    assert sorted(map(_comparable, task_item["annotations"])) == sorted(map(_comparable, expected))
