"""Killing the router mid-run: items flow through a running pipeline (Dataset -> Predict
from 0 replicas -> Task) while the trigger-router is killed with SIGKILL and started again;
afterwards every item is in the task exactly once.

The five services run as real processes behind nginx (:mod:`prelabel_stack.isolated`, the
way ``make up`` runs them, on a database, bucket and topology prefix of their own), driven
through the one URL with the SDK. A kill leaves what a crash leaves: unacknowledged
deliveries, outbox rows not yet relayed, transactions cut in the middle, worker processes
without their parent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from prelabel_client.models import Pipeline, TaskItem
from prelabel_stack.isolated import isolated_stack
from tests.e2e.conftest import digits_project, until
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 60
DEADLINE_S = 180.0


@pytest.mark.e2e
async def test_a_router_killed_mid_run_leaves_every_item_in_the_task_exactly_once(
    tmp_path: Path,
) -> None:
    digits = held_out_digits(ITEMS)
    async with (
        isolated_stack("e2e-router-kill", root=tmp_path) as stack,
        digits_project(stack.url, stack.admin_key, "e2e-router-kill", cooldown_seconds=5) as setup,
    ):
        client, dataset, task = setup.client, setup.dataset, setup.task
        pipeline = await client.pipelines.create(
            {
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": dataset.id}},
                    {"id": "predict", "type": "predict",
                     "config": {"service_id": setup.service_id}},
                    {"id": "review", "type": "task", "config": {"task_id": task.id}},
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
            }
        )  # fmt: skip
        await client.pipelines.start(pipeline.id)

        async def upload(n: int) -> str:
            return (await client.items.upload(dataset.id, digits[n][1], f"d{n}.png")).id

        async def task_items(at_least: int) -> list[TaskItem]:
            items = [i async for i in client.tasks.iter_items(task.id)]
            return items if len(items) >= at_least else []

        first = await asyncio.gather(*(upload(n) for n in range(ITEMS // 2)))
        # Mid-run: some items are through, the rest in flight (and more still to come).
        await until("the first items in the task", lambda: task_items(1), DEADLINE_S)
        await stack.kill("trigger-router")
        # Uploads while the router is down wait in its queue.
        rest = await asyncio.gather(*(upload(n) for n in range(ITEMS // 2, ITEMS)))
        await stack.restart("trigger-router")
        in_task = await until("every item in the task", lambda: task_items(ITEMS), DEADLINE_S)

        async def all_succeeded() -> Pipeline | None:
            body = await client.pipelines.get(pipeline.id)
            return body if body.executions.get("success", 0) >= ITEMS else None

        done = await until("every pipeline execution to succeed", all_succeeded, DEADLINE_S)

    uploaded = sorted([*first, *rest])
    assert sorted(i.item_id for i in in_task) == uploaded  # none twice, none missing
    assert all(i.annotations for i in in_task)
    assert done.executions["success"] == ITEMS
    assert done.counts["review"]["success"] == ITEMS
