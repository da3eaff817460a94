"""Cancel through the five services: half of a batch is cancelled while the digits service
is still cold-starting from 0 replicas. The cancelled executions are never predicted and
leave no annotations or task items; the others run (seen ``in-progress`` on the way) and
end ``success`` with their annotations."""

from __future__ import annotations

import asyncio

import pytest

from common.service import runtime_of
from prelabel_client.models import Execution
from tests.e2e.conftest import RunningStack, digits_project, until
from tests.integration.model_serving.conftest import held_out_digits

ITEMS = 8
PREDICT_CLAIMS = "model_serving.predict"
"""model-serving's ledger of answered predict requests (one claim per request key)."""


@pytest.mark.e2e
async def test_executions_cancelled_during_a_cold_start_are_not_predicted(
    stack: RunningStack,
) -> None:
    digits = held_out_digits(ITEMS)
    async with digits_project(
        stack.client_endpoints, stack.endpoints.admin_key, "e2e-cancel", cooldown_seconds=2
    ) as setup:
        client, dataset, service_id = setup.client, setup.dataset, setup.service_id
        task = await client.tasks.create(
            "pre-labelled", dataset.id, auto_add_from_services=[service_id]
        )
        items = [
            await client.items.upload(dataset.id, data, f"d{n}.png")
            for n, (_, data) in enumerate(digits)
        ]
        assert (await client.services.scaling(service_id)).actual_replicas == 0

        batch = await client.batches.predict(service_id, item_ids=[i.id for i in items])
        page = await client.executions.list(service_id=service_id, page_size=500)
        by_item = {e.item_id: e for e in page.items}
        ordered = [by_item[i.id] for i in items]
        cancel, keep = ordered[1::2], ordered[0::2]
        answers = await asyncio.gather(*(client.executions.cancel(e.id) for e in cancel))
        during = await client.batches.get(batch.id)

        assert {a.status for a in answers} == {"cancelled"}
        # Cancelled while the service was still starting: nothing had been predicted.
        assert during.counts["success"] == 0, during.counts

        async def one_in_progress() -> list[Execution]:
            page = await client.executions.list(service_id=service_id, status=["in-progress"])
            return [e for e in page.items if e.started_at is not None]

        [running, *_] = await until("an execution in progress", one_in_progress)

        async def kept_succeeded() -> dict[str, int] | None:
            counts = (await client.batches.get(batch.id)).counts
            return counts if counts["success"] == len(keep) else None

        counts = await until("the kept executions to succeed", kept_succeeded)

        async def scaled_to_zero() -> bool:
            scaling = await client.services.scaling(service_id)
            return scaling.actual_replicas == 0 and scaling.running_replicas == 0

        await until("the service back at 0 replicas", scaled_to_zero)

        async def kept_annotated() -> bool:
            found = await client.annotations.list(dataset_id=dataset.id)
            return {a.item_id for a in found} >= {e.item_id for e in keep}

        async def billed() -> bool:
            usage = await client.billing.usage(service_id=service_id)
            return usage.total.predictions >= len(keep)

        await until("the kept items' annotations", kept_annotated)
        await until("billing to count the predictions", billed)
        final = {e.id: e for e in (await client.executions.list(service_id=service_id)).items}
        annotated = {e.item_id: await client.annotations.list(item_id=e.item_id) for e in ordered}
        task_items = await client.tasks.items(task.id)
        usage = await client.billing.usage(service_id=service_id)
        pool = runtime_of(stack.app("model-serving")).pool
        claims = await pool.fetch(
            "SELECT message_id FROM processed_messages WHERE consumer = $1", PREDICT_CLAIMS
        )

    assert counts["cancelled"] == len(cancel)
    assert counts["success"] == len(keep)
    assert running.id in {e.id for e in keep}
    assert running.replica_id is not None
    assert final[running.id].status == "success"
    assert final[running.id].started_at is not None
    assert {final[e.id].status for e in cancel} == {"cancelled"}
    assert {final[e.id].status for e in keep} == {"success"}
    # Not predicted: model-serving answered the kept requests only (one claim each).
    assert sorted(r["message_id"] for r in claims) == sorted(f"{e.id}#1" for e in keep)
    assert usage.total.predictions == len(keep)
    for execution in cancel:
        assert annotated[execution.item_id] == [], execution.item_id
    for execution in keep:
        stored = annotated[execution.item_id]
        assert [a.execution_id for a in stored] == [execution.id], execution.item_id
    assert sorted(i.item_id for i in task_items.items) == sorted(e.item_id for e in keep)
