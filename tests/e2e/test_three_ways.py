"""The three ways to pre-label on one dataset at once: a running pipeline, a trigger on the
model service and a browser-style batch on the same items. Each way makes its own
executions, and every stored annotation says which way (and which execution) made it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from scripts.demo import Api
from tests.e2e.conftest import RunningStack
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 4
DEADLINE_S = 150.0
WAYS = {"pipeline", "trigger", "batch"}


async def _until(
    what: str, probe: Callable[[], Awaitable[Any]], deadline_s: float = DEADLINE_S
) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"waited {deadline_s:.0f}s for {what}; last answer {last!r}")


@pytest.mark.e2e
async def test_pipeline_trigger_and_batch_on_one_dataset_each_make_their_own_annotations(
    stack: RunningStack,
) -> None:
    api = Api(stack.endpoints, timeout_s=60)
    step = "three-ways"
    digits = held_out_digits(ITEMS)
    try:
        project = await api.call(
            "dataset", "POST", "/projects", step=step, expect=(201,), admin=True,
            json={"name": "e2e-three-ways"},
        )  # fmt: skip
        key = await api.call(
            "dataset", "POST", f"/projects/{project['id']}/api-keys", step=step,
            expect=(201,), admin=True, json={"name": "e2e"},
        )  # fmt: skip
        api.api_key = key["key"]
        dataset = await api.call(
            "dataset", "POST", "/datasets", step=step, expect=(201,), json={"name": "digits"}
        )
        model = await api.call(
            "model-serving", "POST", "/catalog/digits-classifier/install", step=step,
            expect=(201,),
        )  # fmt: skip
        service = await api.call(
            "model-serving", "POST", "/services", step=step, expect=(201,),
            json={"model_id": model["id"], "name": "digits", "min_replicas": 0,
                  "max_replicas": 1, "cooldown_seconds": 5, "drain_seconds": 2},
        )  # fmt: skip
        service_id = service["id"]

        async def router_sees_it_ready() -> bool:
            known = await api.call(
                "trigger-router", "GET", f"/services/{service_id}", step=step, expect=(200, 404)
            )
            return bool(known) and known.get("status") == "ready"

        await _until("the router to see the service ready", router_sees_it_ready)
        task = await api.call(
            "annotation", "POST", "/tasks", step=step, expect=(201,),
            json={"name": "review", "dataset_id": dataset["id"]},
        )  # fmt: skip
        trigger = await api.call(
            "trigger-router", "POST", "/triggers", step=step, expect=(201,),
            json={"name": "digits-on-upload", "spec": {
                "resource": "Item", "actions": ["Created"], "execution_mode": "Once",
                "filter": {"dataset_id": dataset["id"]},
                "operation": {"type": "predict", "service_id": service_id}}},
        )  # fmt: skip
        pipeline = await api.call(
            "trigger-router", "POST", "/pipelines", step=step, expect=(201,),
            json={
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": dataset["id"]}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {"id": "review", "type": "task", "config": {"task_id": task["id"]}},
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
            },
        )  # fmt: skip
        pid = pipeline["id"]
        await api.call("trigger-router", "POST", f"/pipelines/{pid}/start", step=step)

        async def upload(n: int) -> str:
            item = await api.call(
                "dataset", "POST", f"/datasets/{dataset['id']}/items", step=step,
                expect=(201,), files={"file": (f"d{n}.png", digits[n][1], "image/png")},
            )  # fmt: skip
            return str(item["id"])

        uploaded = sorted(await asyncio.gather(*(upload(n) for n in range(ITEMS))))
        batch = await api.call(
            "trigger-router", "POST", f"/services/{service_id}/predict", step=step,
            # force: the pipeline or the trigger may already have predicted these items
            # with this model version, which a batch otherwise skips.
            expect=(201,), json={"item_ids": uploaded, "force": True},
        )  # fmt: skip

        async def all_succeeded() -> list[dict[str, Any]]:
            page = await api.call(
                "trigger-router", "GET", "/executions", step=step,
                params={"service_id": service_id, "page_size": 500},
            )  # fmt: skip
            items: list[dict[str, Any]] = page["items"]
            done = [e for e in items if e["status"] == "success"]
            return items if len(done) >= 3 * ITEMS else []

        executions = await _until("three executions per item to succeed", all_succeeded)

        async def annotations_of(item_id: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = await api.call(
                "annotation", "GET", "/annotations", step=step, params={"item_id": item_id}
            )
            ways = {(a.get("origin") or {}).get("way") for a in found}
            return found if ways >= WAYS else []

        annotations = {i: await _until(f"{i}'s annotations", lambda i=i: annotations_of(i)) for i in uploaded}  # fmt: skip
    finally:
        await api.aclose()

    assert len(executions) == 3 * ITEMS
    by_way: dict[str, list[dict[str, Any]]] = {}
    for execution in executions:
        way = (
            "pipeline"
            if execution["pipeline_id"]
            else "batch"
            if execution["batch_id"]
            else "trigger"
        )
        by_way.setdefault(way, []).append(execution)
    assert {way: sorted(e["item_id"] for e in found) for way, found in by_way.items()} == {
        way: uploaded for way in WAYS
    }  # one execution per item and way
    assert {e["pipeline_id"] for e in by_way["pipeline"]} == {pid}
    assert {e["batch_id"] for e in by_way["batch"]} == {batch["id"]}
    assert {e["trigger_id"] for e in by_way["trigger"]} == {trigger["id"]}
    execution_way = {e["id"]: way for way, found in by_way.items() for e in found}
    for item_id, stored in annotations.items():
        for annotation in stored:
            origin = annotation["origin"]
            # Each annotation names the way and the execution that produced it.
            assert execution_way[annotation["execution_id"]] == origin["way"], (item_id, origin)
        assert {a["origin"]["way"] for a in stored} == WAYS
