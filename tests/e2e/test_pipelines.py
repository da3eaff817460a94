"""A pipeline on the whole stack: Dataset (Item Created) -> Predict (digits, from 0 replicas)
-> Task, with a confidence edge sending confident predictions to an auto-accepted path.

Each uploaded item must land in the task exactly once with its annotations; the node counts
the router's API shows must be its database's; the service must scale back to 0; stopping
the pipeline stops new items entering, and a restart takes new items only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from common.service import runtime_of
from scripts.demo import Api
from tests.e2e.conftest import RunningStack
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 200
DEADLINE_S = 150.0
CONFIDENT = {"prediction.min_confidence": {"$gte": 0.9}}
UNSURE = {"$or": [{"prediction.min_confidence": {"$lt": 0.9}}, {"prediction.count": 0}]}


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
async def test_items_flow_dataset_predict_task_with_a_confidence_edge(
    stack: RunningStack,
) -> None:
    api = Api(stack.endpoints, timeout_s=60)
    step = "pipeline"
    digits = held_out_digits(ITEMS + 3)
    try:
        project = await api.call(
            "dataset", "POST", "/projects", step=step, expect=(201,), admin=True,
            json={"name": "e2e-pipeline"},
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
                  "max_replicas": 1, "cooldown_seconds": 2, "drain_seconds": 2},
        )  # fmt: skip
        service_id = service["id"]

        async def router_sees_it_ready() -> bool:
            known = await api.call(
                "trigger-router", "GET", f"/services/{service_id}", step=step, expect=(200, 404)
            )
            return bool(known) and known.get("status") == "ready"

        await _until("the router to see the service ready", router_sees_it_ready)
        # A dataset holding text: the digits model (images) is refused, the node named.
        notes = await api.call(
            "dataset", "POST", "/datasets", step=step, expect=(201,), json={"name": "notes"}
        )
        await api.call(
            "dataset", "POST", f"/datasets/{notes['id']}/items", step=step, expect=(201,),
            files={"file": ("note.txt", b"a note", "text/plain")},
        )  # fmt: skip
        refused = await api.call(
            "trigger-router", "POST", "/pipelines", step=step, expect=(422,),
            json={
                "name": "notes-to-digits",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": notes["id"]}},
                    {"id": "guess", "type": "predict", "config": {"service_id": service_id}},
                ],
                "edges": [{"src": "ds", "tgt": "guess"}],
            },
        )  # fmt: skip
        task = await api.call(
            "annotation", "POST", "/tasks", step=step, expect=(201,),
            json={"name": "review", "dataset_id": dataset["id"]},
        )  # fmt: skip
        pipeline = await api.call(
            "trigger-router", "POST", "/pipelines", step=step, expect=(201,),
            json={
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {
                        "dataset_id": dataset["id"],
                        "trigger": {"actions": ["Created"], "execution_mode": "Once"}}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {"id": "done", "type": "task",
                     "config": {"task_id": task["id"], "auto_accept": True}},
                    {"id": "review", "type": "task", "config": {"task_id": task["id"]}},
                ],
                "edges": [
                    {"src": "ds", "tgt": "predict"},
                    {"src": "predict", "tgt": "done", "condition": CONFIDENT},
                    {"src": "predict", "tgt": "review", "condition": UNSURE},
                ],
            },
        )  # fmt: skip
        pid = pipeline["id"]
        await api.call("trigger-router", "POST", f"/pipelines/{pid}/start", step=step)

        async def upload(n: int) -> str:
            _label, data = digits[n]
            item = await api.call(
                "dataset", "POST", f"/datasets/{dataset['id']}/items", step=step,
                expect=(201,), files={"file": (f"d{n}.png", data, "image/png")},
                data={"dir": "/e2e"},
            )  # fmt: skip
            return str(item["id"])

        uploaded = await asyncio.gather(*(upload(n) for n in range(ITEMS)))

        async def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = await api.call(
                "trigger-router", "GET", f"/pipelines/{pid}", step=step
            )
            # Every execution succeeded and no node is still pending or running: the
            # answer's counts (read apart from its execution counts) are final.
            settled = not any(
                counts.get("pending") or counts.get("running") for counts in body["counts"].values()
            )
            return body if body["executions"]["success"] >= ITEMS and settled else None

        done = await _until("every item through the pipeline", finished)
        # Nothing else is in flight now: the API's counts are the database's.
        in_db = await runtime_of(stack.app("trigger-router")).pool.fetch(
            """SELECT node_id, status, count(*) AS n FROM pipeline_nodes
               WHERE pipeline_id = $1 GROUP BY node_id, status""",
            pid,
        )

        async def task_items() -> list[dict[str, Any]]:
            page = await api.call(
                "annotation", "GET", f"/tasks/{task['id']}/items", step=step,
                params={"limit": 500},
            )  # fmt: skip
            items: list[dict[str, Any]] = page["items"]
            return items if len(items) >= ITEMS else []

        in_task = await _until("every item in the task", task_items)
        executions = await api.call(
            "trigger-router", "GET", "/executions", step=step,
            params={"service_id": service_id, "page_size": 500},
        )  # fmt: skip

        async def back_to_zero() -> bool:
            known = await api.call("trigger-router", "GET", f"/services/{service_id}", step=step)
            return known["desired_replicas"] == 0 and known["actual_replicas"] == 0

        await _until("the service to scale back to 0", back_to_zero)

        # Stop: new items do not enter. Restart: the next new item does, the others never.
        await api.call("trigger-router", "POST", f"/pipelines/{pid}/stop", step=step)
        while_stopped = [await upload(ITEMS), await upload(ITEMS + 1)]
        await api.call("trigger-router", "POST", f"/pipelines/{pid}/start", step=step)
        later = await upload(ITEMS + 2)

        async def later_entered() -> list[dict[str, Any]]:
            page = await api.call(
                "trigger-router", "GET", f"/pipelines/{pid}/executions", step=step,
                params={"page_size": 500},
            )  # fmt: skip
            items: list[dict[str, Any]] = page["items"]
            return items if any(r["item_id"] == later for r in items) else []

        after_restart = await _until("the item uploaded after the restart", later_entered)
    finally:
        await api.aclose()

    assert {(r["node_id"], r["status"]): r["n"] for r in in_db} == {
        (node, status): n for node, counts in done["counts"].items()
        for status, n in counts.items() if n
    }  # fmt: skip
    assert "node 'guess'" in str(refused), refused
    assert "text/plain" in str(refused), refused
    assert done["counts"]["predict"]["success"] == ITEMS
    assert done["counts"]["done"]["success"] + done["counts"]["review"]["success"] == ITEMS
    assert done["counts"]["done"]["success"] == done["counts"]["review"]["skipped"]

    assert sorted(i["item_id"] for i in in_task) == sorted(uploaded)  # each exactly once
    assert all(i["annotations"] for i in in_task)
    statuses = {i["item_id"]: i["status"] for i in in_task}
    approved = sum(1 for s in statuses.values() if s == "approved")
    assert approved == done["counts"]["done"]["success"]
    assert (
        sum(1 for s in statuses.values() if s == "pending-review")
        == (done["counts"]["review"]["success"])
    )
    ledger = [e for e in executions["items"] if e["pipeline_id"] == pid]
    assert len(ledger) == ITEMS
    assert all(e["status"] == "success" for e in ledger)
    assert any(e["cold_start"] for e in ledger)

    entered = {r["item_id"] for r in after_restart}
    assert later in entered
    assert not entered & set(while_stopped)
    assert len(after_restart) == ITEMS + 1
