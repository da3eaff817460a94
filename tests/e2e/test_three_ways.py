"""The three ways to pre-label on one dataset at once: a running pipeline, a trigger on the
model service and a browser-style batch on the same items. Each way makes its own
executions, and every stored annotation says which way (and which execution) made it.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from prelabel_client.models import Annotation, Execution, Operation, TriggerSpec
from tests.e2e.conftest import RunningStack, digits_project, until
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 4
WAYS = {"pipeline", "trigger", "batch"}


def _way(execution: Execution) -> str:
    if execution.pipeline_id:
        return "pipeline"
    return "batch" if execution.batch_id else "trigger"


@pytest.mark.e2e
async def test_pipeline_trigger_and_batch_on_one_dataset_each_make_their_own_annotations(
    stack: RunningStack,
) -> None:
    digits = held_out_digits(ITEMS)
    async with digits_project(
        stack.client_endpoints, stack.endpoints.admin_key, "e2e-three-ways", cooldown_seconds=5
    ) as setup:
        client, dataset, service_id = setup.client, setup.dataset, setup.service_id
        trigger = await client.triggers.create(
            "digits-on-upload",
            TriggerSpec(
                filter={"dataset_id": dataset.id}, operation=Operation(service_id=service_id)
            ),
        )
        pipeline = await client.pipelines.create(
            {
                "name": "digits-to-review",
                "nodes": [
                    {"id": "ds", "type": "dataset", "config": {"dataset_id": dataset.id}},
                    {"id": "predict", "type": "predict", "config": {"service_id": service_id}},
                    {"id": "review", "type": "task", "config": {"task_id": setup.task.id}},
                ],
                "edges": [{"src": "ds", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
            }
        )  # fmt: skip
        await client.pipelines.start(pipeline.id)
        items = await asyncio.gather(
            *(client.items.upload(dataset.id, digits[n][1], f"d{n}.png") for n in range(ITEMS))
        )
        uploaded = sorted(item.id for item in items)
        # force: the pipeline or the trigger may already have predicted these items with
        # this model version, which a batch otherwise skips.
        batch = await client.batches.predict(service_id, item_ids=uploaded, force=True)

        async def all_succeeded() -> list[Execution]:
            page = await client.executions.list(service_id=service_id, page_size=500)
            done = [e for e in page.items if e.status == "success"]
            return page.items if len(done) >= 3 * ITEMS else []

        executions = await until("three executions per item to succeed", all_succeeded)

        async def annotations_of(item_id: str) -> list[Annotation]:
            found = await client.annotations.list(item_id=item_id)
            ways = {(a.origin or {}).get("way") for a in found}
            return found if ways >= WAYS else []

        annotations = {
            i: await until(f"{i}'s annotations", functools.partial(annotations_of, i))
            for i in uploaded
        }

    assert len(executions) == 3 * ITEMS
    by_way: dict[str, list[Execution]] = {}
    for execution in executions:
        by_way.setdefault(_way(execution), []).append(execution)
    assert {way: sorted(e.item_id for e in found) for way, found in by_way.items()} == {
        way: uploaded for way in WAYS
    }  # one execution per item and way
    assert {e.pipeline_id for e in by_way["pipeline"]} == {pipeline.id}
    assert {e.batch_id for e in by_way["batch"]} == {batch.id}
    assert {e.trigger_id for e in by_way["trigger"]} == {trigger.id}
    execution_way = {e.id: way for way, found in by_way.items() for e in found}
    for item_id, stored in annotations.items():
        for annotation in stored:
            origin = annotation.origin or {}
            # Each annotation names the way and the execution that produced it.
            assert annotation.execution_id is not None, (item_id, annotation)
            assert execution_way[annotation.execution_id] == origin.get("way"), (item_id, origin)
        assert {(a.origin or {}).get("way") for a in stored} == WAYS
