"""A pipeline on the whole stack: Dataset (Item Created) -> Predict (digits, from 0 replicas)
-> Task, with a confidence edge sending confident predictions to an auto-accepted path.

Each uploaded item must land in the task exactly once with its annotations; the node counts
the router's API shows must be its database's; the service must scale back to 0; stopping
the pipeline stops new items entering, and a restart takes new items only.
"""

from __future__ import annotations

import asyncio

import pytest

from common.service import runtime_of
from prelabel_client.errors import ValidationError
from prelabel_client.models import Pipeline, PipelineExecution, TaskItem
from tests.e2e.conftest import RunningStack, digits_project, until
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 200
CONFIDENT = {"prediction.min_confidence": {"$gte": 0.9}}
UNSURE = {"$or": [{"prediction.min_confidence": {"$lt": 0.9}}, {"prediction.count": 0}]}


@pytest.mark.e2e
async def test_items_flow_dataset_predict_task_with_a_confidence_edge(
    stack: RunningStack,
) -> None:
    digits = held_out_digits(ITEMS + 3)
    async with digits_project(
        stack.client_endpoints, stack.endpoints.admin_key, "e2e-pipeline"
    ) as setup:
        client, dataset, service_id, task = (
            setup.client, setup.dataset, setup.service_id, setup.task
        )  # fmt: skip
        # A dataset holding text: the digits model (images) is refused, the node named.
        notes = await client.datasets.create("notes")
        await client.items.upload(notes.id, b"a note", "note.txt")
        with pytest.raises(ValidationError) as refused:
            await client.pipelines.create(
                {
                    "name": "notes-to-digits",
                    "nodes": [
                        {"id": "ds", "type": "dataset", "config": {"dataset_id": notes.id}},
                        {"id": "guess", "type": "predict", "config": {"service_id": service_id}},
                    ],
                    "edges": [{"src": "ds", "tgt": "guess"}],
                }
            )  # fmt: skip
        pipeline = await client.pipelines.create(
            {
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {
                        "dataset_id": dataset.id,
                        "trigger": {"actions": ["Created"], "execution_mode": "Once"}}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {"id": "done", "type": "task",
                     "config": {"task_id": task.id, "auto_accept": True}},
                    {"id": "review", "type": "task", "config": {"task_id": task.id}},
                ],
                "edges": [
                    {"src": "ds", "tgt": "predict"},
                    {"src": "predict", "tgt": "done", "condition": CONFIDENT},
                    {"src": "predict", "tgt": "review", "condition": UNSURE},
                ],
            }
        )  # fmt: skip
        pid = pipeline.id
        await client.pipelines.start(pid)

        async def upload(n: int) -> str:
            item = await client.items.upload(
                dataset.id, digits[n][1], f"d{n}.png", remote_dir="/e2e"
            )
            return item.id

        uploaded = await asyncio.gather(*(upload(n) for n in range(ITEMS)))

        async def finished() -> Pipeline | None:
            body = await client.pipelines.get(pid)
            # Every execution succeeded and no node is still pending or running: the
            # answer's counts (read apart from its execution counts) are final.
            settled = not any(
                counts.get("pending") or counts.get("running") for counts in body.counts.values()
            )
            return body if body.executions.get("success", 0) >= ITEMS and settled else None

        done = await until("every item through the pipeline", finished)
        # Nothing else is in flight now: the API's counts are the database's.
        in_db = await runtime_of(stack.app("trigger-router")).pool.fetch(
            """SELECT node_id, status, count(*) AS n FROM pipeline_nodes
               WHERE pipeline_id = $1 GROUP BY node_id, status""",
            pid,
        )

        async def task_items() -> list[TaskItem]:
            items = [i async for i in client.tasks.iter_items(task.id)]
            return items if len(items) >= ITEMS else []

        in_task = await until("every item in the task", task_items)
        executions = await client.executions.list(service_id=service_id, page_size=500)

        async def back_to_zero() -> bool:
            known = await client.services.scaling(service_id)
            return known.desired_replicas == 0 and known.actual_replicas == 0

        await until("the service to scale back to 0", back_to_zero)

        # Stop: new items do not enter. Restart: the next new item does, the others never.
        await client.pipelines.stop(pid)
        while_stopped = [await upload(ITEMS), await upload(ITEMS + 1)]
        await client.pipelines.start(pid)
        later = await upload(ITEMS + 2)

        async def later_entered() -> list[PipelineExecution]:
            page = await client.pipelines.executions(pid, page_size=500)
            return page.items if any(r.item_id == later for r in page.items) else []

        after_restart = await until("the item uploaded after the restart", later_entered)

    assert {(r["node_id"], r["status"]): r["n"] for r in in_db} == {
        (node, status): n for node, counts in done.counts.items()
        for status, n in counts.items() if n
    }  # fmt: skip
    assert refused.value.status_code == 422
    assert "node 'guess'" in refused.value.message, refused.value
    assert "text/plain" in refused.value.message, refused.value
    assert done.counts["predict"]["success"] == ITEMS
    assert done.counts["done"]["success"] + done.counts["review"]["success"] == ITEMS
    assert done.counts["done"]["success"] == done.counts["review"]["skipped"]

    assert sorted(i.item_id for i in in_task) == sorted(uploaded)  # each exactly once
    assert all(i.annotations for i in in_task)
    statuses = {i.item_id: i.status for i in in_task}
    approved = sum(1 for s in statuses.values() if s == "approved")
    assert approved == done.counts["done"]["success"]
    assert (
        sum(1 for s in statuses.values() if s == "pending-review")
        == done.counts["review"]["success"]
    )
    ledger = [e for e in executions.items if e.pipeline_id == pid]
    assert len(ledger) == ITEMS
    assert all(e.status == "success" for e in ledger)
    assert any(e.cold_start for e in ledger)

    entered = {r.item_id for r in after_restart}
    assert later in entered
    assert not entered & set(while_stopped)
    assert len(after_restart) == ITEMS + 1
